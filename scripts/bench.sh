#!/usr/bin/env bash
# The benchmark suite: every performance figure measured against a baseline in the same run.
#
#   scripts/bench.sh                 full suite: release build, full sizes, several runs;
#                                    results go to docs/benchmarks.md (each benchmark its section)
#   scripts/bench.sh --quick         tiny sizes, debug build, one run; results go to
#                                    target/bench-quick.md (scripts/test.sh runs this so the
#                                    benchmarks cannot rot; its figures say nothing about speed)
#   scripts/bench.sh [--quick] NAME  only the named benchmarks
#
# Benchmarks (modules of one bench program, benches/suite/NAME.rs, each with its baseline):
#   mysql_source  snapshot vs mysql_async SELECT *; binlog catch-up vs mysql_async,
#                 mariadb-binlog and python-mysql-replication
#   views         join + aggregate view maintenance vs DataFusion recompute and
#                 differential-dataflow
#   windows       lag + running sum view: 1k-row delta into 1M rows vs DataFusion recompute
#   tpch          the 22 TPC-H queries as views over MariaDB: refresh round vs recompute
#   freshness     MariaDB commit → visible in a view at a steady 5k transactions/s (p50/p99/max)
#   serving       pgbench point SELECTs on a view vs the same on PostgreSQL
#   memory        resident memory and state bytes per row (table, join view, aggregate view)
#   recovery      incremental checkpoints vs a full one; restart time
#   sink          Kafka sink throughput vs a bare librdkafka producer
#   kafka_source  Kafka source ingestion (table + aggregate view) vs a bare librdkafka consumer
#   tables        one source over 1,000 / 5,000 / 10,000 tables: time to streaming, memory per
#                 table, commit -> visible under load (the 1,000-table run is the baseline)
#
# Installs what the baselines need (MariaDB, PostgreSQL, pgbench, a Python venv under target/
# with python-mysql-replication) when run as root; otherwise says what to install.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/lib.sh
source scripts/lib.sh

all=(mysql_source views windows tpch freshness serving memory recovery sink kafka_source tables)
quick=0
names=()
for arg in "$@"; do
  case "$arg" in
    --quick) quick=1 ;;
    -h | --help) sed -n '2,/^set -e/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    -*) echo "unknown option $arg (see scripts/bench.sh --help)" >&2; exit 2 ;;
    *)
      [[ " ${all[*]} " == *" $arg "* ]] || { echo "unknown benchmark $arg; one of: ${all[*]}" >&2; exit 2; }
      names+=("$arg") ;;
  esac
done
[ ${#names[@]} -gt 0 ] || names=("${all[@]}")

need_apt=()
[ -x /usr/sbin/mariadbd ] || command -v mariadbd >/dev/null 2>&1 || need_apt+=(mariadb-server)
command -v mariadb-binlog >/dev/null 2>&1 || need_apt+=(mariadb-client)
compgen -G "/usr/lib/postgresql/*/bin/postgres" >/dev/null || need_apt+=(postgresql)
command -v pgbench >/dev/null 2>&1 || need_apt+=(postgresql-client)
command -v cc >/dev/null 2>&1 || need_apt+=(build-essential)
python3 -c 'import ensurepip' >/dev/null 2>&1 || need_apt+=(python3-venv)
apt_install "${need_apt[@]}"

venv=target/bench-venv
if ! "$venv/bin/python" -c 'import pymysqlreplication' >/dev/null 2>&1; then
  echo "== python-mysql-replication (a venv under target/)"
  rm -rf "$venv"
  python3 -m venv "$venv"
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r benches/baselines/requirements.txt
fi
export HEADWATER_BENCH_PYTHON="$PWD/$venv/bin/python"

start=$(date +%s)
log=$(mktemp)
trap 'rm -f "$log"' EXIT
# One process per benchmark, so each starts with a clean heap (the memory figures need it); a
# benchmark that did not run to its end line fails the script.
run_one() { # run_one NAME CARGO-ARGS...
  local n=$1; shift
  "$@" --bench suite -- "$n" | tee "$log"
  grep -q "^== benchmark $n done" "$log" || { echo "benchmark $n did not run to its end" >&2; exit 1; }
}
if [ "$quick" = 1 ]; then
  echo "== quick benchmarks (debug build, tiny sizes): ${names[*]}"
  for n in "${names[@]}"; do HEADWATER_BENCH_QUICK=1 run_one "$n" cargo test --quiet; done
  echo "== quick benchmarks passed in $(( $(date +%s) - start ))s; figures in target/bench-quick.md"
else
  echo "== benchmarks (release build): ${names[*]}"
  for n in "${names[@]}"; do run_one "$n" cargo bench; done
  echo "== benchmarks done in $(( $(date +%s) - start ))s; figures in docs/benchmarks.md"
fi
