#!/usr/bin/env bash
# The one test command: installs what the tests need, then runs every check.
#   - cargo fmt --check, cargo clippy -D warnings, doc links (cargo doc)
#   - cargo test: unit tests, the .slt suites over the wire (simple + extended protocol),
#     the tokio-postgres wire tests, the MySQL source tests against a real MariaDB that the
#     tests start themselves (own datadir, free port, binlog on), differential tests against a
#     real PostgreSQL they start the same way, the Kafka sink tests
#     against librdkafka's mock cluster (in-process, nothing to install) incl. kill -9
#   - the psql smoke test (real psql against a real server process)
#   - the client suite (scripts/clients.sh: psycopg, psycopg2, asyncpg, SQLAlchemy, pandas,
#     node-postgres, pgjdbc, pgbench, BI tools' catalog queries, SCRAM and TLS)
#   - the benchmark suite in quick mode (scripts/bench.sh --quick: tiny sizes, debug build,
#     every baseline run for real) so the benchmarks cannot rot
# The randomized oracles and fuzzers run briefly here; scripts/soak.sh runs them long.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/lib.sh
source scripts/lib.sh

need_apt=()
command -v psql >/dev/null 2>&1 || need_apt+=(postgresql-client)
# The reference for SQL answers (tests/integration/pg_differential.rs starts its own cluster).
compgen -G "/usr/lib/postgresql/*/bin/postgres" >/dev/null || need_apt+=(postgresql)
[ -x /usr/sbin/mariadbd ] || command -v mariadbd >/dev/null 2>&1 || need_apt+=(mariadb-server)
command -v cc >/dev/null 2>&1 || need_apt+=(build-essential)
# librdkafka (built from source by rdkafka-sys): make, pkg-config, OpenSSL and zlib headers.
command -v make >/dev/null 2>&1 || need_apt+=(make)
command -v pkg-config >/dev/null 2>&1 || need_apt+=(pkg-config)
dpkg -s libssl-dev >/dev/null 2>&1 || need_apt+=(libssl-dev)
dpkg -s zlib1g-dev >/dev/null 2>&1 || need_apt+=(zlib1g-dev)
apt_install "${need_apt[@]}"
command -v cargo >/dev/null 2>&1 || { echo "cargo not found: install Rust (https://rustup.rs)" >&2; exit 1; }

start=$(date +%s)
# Each phase says when it starts (seconds since the start), so a slow CI run shows where.
phase() { echo "== [$(( $(date +%s) - start ))s] $*"; }
phase "cargo fmt --check"
cargo fmt --all -- --check
phase "cargo clippy"
cargo clippy --all-targets --quiet -- -D warnings
# Doc links are checked so module docs cannot go stale (a link to a moved item fails).
phase "cargo doc (broken links)"
RUSTDOCFLAGS="-D rustdoc::broken_intra_doc_links -A rustdoc::private_intra_doc_links" \
    cargo doc --no-deps --lib --document-private-items --quiet
phase "cargo test"
cargo test --quiet 2>&1 | tee /tmp/headwater-cargo-test.log
phase "psql smoke test"
bash scripts/psql_smoke.sh
phase "client compatibility suite"
bash scripts/clients.sh
phase "benchmarks, quick mode"
bash scripts/bench.sh --quick
phase "all tests passed in $(( $(date +%s) - start ))s"
