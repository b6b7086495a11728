#!/usr/bin/env bash
# Coverage-guided fuzzing (issue 30) with cargo-fuzz (libFuzzer) of the two paths every client
# byte takes before a statement runs:
#   wire_messages  the framing check + pgwire's frontend message decoder (src/pgwire/framing.rs)
#   statements     the statement parser with its compatibility rewrites and complexity limits
#   queries        read-only statements planned and run against an engine with tables and a
#                  view (250 ms deadline, small memory limits); XX000 errors are counted as
#                  findings in fuzz/queries_internal.log
# The parser and queries targets run HEADWATER_FUZZ_RUNS executions each (default 1,000,000), the wire target
# HEADWATER_FUZZ_WIRE_RUNS (default 50,000,000; ~500,000/s), from seeds made of the
# PostgreSQL regression statements (tests/pg_regress) and hand-made protocol messages; the
# figures go to docs/benchmarks.md (section "fuzz"). A crash stops the run with libFuzzer's
# report and the input in fuzz/artifacts/<target>/.
#
#   scripts/fuzz.sh                  both targets
#   scripts/fuzz.sh statements       one
#
# Needs a nightly toolchain (rustup toolchain install nightly) and cargo-fuzz
# (cargo install cargo-fuzz). Not part of the test command: the instrumented build alone
# takes ~20 minutes on 2 cores.
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${HEADWATER_FUZZ_RUNS:-1000000}
wire_runs=${HEADWATER_FUZZ_WIRE_RUNS:-50000000}
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(wire_messages statements queries)
cargo +nightly --version >/dev/null 2>&1 || { echo "fuzz.sh needs a nightly toolchain: rustup toolchain install nightly" >&2; exit 1; }
cargo fuzz --version >/dev/null 2>&1 || { echo "fuzz.sh needs cargo-fuzz: cargo install cargo-fuzz" >&2; exit 1; }
# The versions the server is built with (cargo adds the fuzzing crates to the copy).
[ -f fuzz/Cargo.lock ] || cp Cargo.lock fuzz/Cargo.lock
echo "== building the fuzz targets (instrumented, release)"
cargo +nightly fuzz build --sanitizer none

echo "== seeds"
python3 - <<'PY'
import os, re, struct, glob
os.makedirs("fuzz/corpus/statements", exist_ok=True)
os.makedirs("fuzz/corpus/wire_messages", exist_ok=True)
os.makedirs("fuzz/corpus/queries", exist_ok=True)
n = q = 0
for path in sorted(glob.glob("tests/pg_regress/sql/*.sql")):
    for stmt in open(path, encoding="utf-8", errors="replace").read().split(";\n"):
        stmt = stmt.strip()
        if stmt and n < 3000:
            open(f"fuzz/corpus/statements/seed{n:05}", "w").write(stmt)
            n += 1
        if stmt.lower().startswith(("select", "values", "with")) and q < 2000:
            open(f"fuzz/corpus/queries/seed{q:05}", "w").write(stmt)
            q += 1
# Statements over the target's own tables t, u and view by_a (fuzz/fuzz_targets/queries.rs).
for i, stmt in enumerate([
    "SELECT a, count(*), sum(c), avg(f), max(d), min(h) FROM t GROUP BY a ORDER BY a",
    "SELECT t.id, u.name, u.amount FROM t JOIN u ON u.t_id = t.id WHERE t.g AND u.amount > 10 LIMIT 5",
    "SELECT e->>'k', e->'tags'->0, jsonb_array_length(e->'tags') FROM t WHERE e ? 'k'",
    "WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r WHERE n < 10) SELECT sum(n) FROM r",
    "SELECT id, row_number() OVER (PARTITION BY a ORDER BY c DESC), lag(b) OVER (ORDER BY id) FROM t",
    "SELECT * FROM by_a WHERE n > 1 ORDER BY total DESC NULLS LAST",
    "SELECT date_trunc('month', d), to_char(d, 'YYYY-MM-DD HH24:MI'), extract(epoch FROM d) FROM t",
    "SELECT i[1], array_length(i, 1), unnest(i) FROM t WHERE id < 5",
    "SELECT a FROM t EXCEPT SELECT t_id FROM u INTERSECT SELECT id FROM t",
    "SELECT CASE WHEN a > 3 THEN b ELSE NULL END, coalesce(c, 0) / nullif(a, 0) FROM t",
    "SELECT (SELECT max(amount) FROM u WHERE u.t_id = t.id) FROM t WHERE id IN (SELECT t_id FROM u)",
    "EXPLAIN SELECT * FROM t WHERE id = 3",
    "SELECT * FROM t WHERE id = $1",
    "VALUES (1, 'a'), (2, 'b')",
    "SHOW TABLES",
]):
    open(f"fuzz/corpus/queries/own{i:03}", "w").write(stmt)
def msg(tag, body):
    return tag + struct.pack("!i", len(body) + 4) + body
cstr = lambda s: s.encode() + b"\0"
startup = struct.pack("!i", 196608) + cstr("user") + cstr("headwater") + cstr("database") + cstr("db") + b"\0"
seeds = {
    "startup": struct.pack("!i", len(startup) + 4) + startup,
    "ssl": struct.pack("!ii", 8, 80877103),
    "cancel": struct.pack("!iiii", 16, 80877102, 1, 2),
    "query": msg(b"Q", cstr("SELECT 1")),
    "parse": msg(b"P", cstr("s1") + cstr("SELECT $1::int") + struct.pack("!hi", 1, 23)),
    "bind": msg(b"B", cstr("") + cstr("s1") + struct.pack("!hh", 1, 0) + struct.pack("!h", 1)
                + struct.pack("!i", 1) + b"7" + struct.pack("!hh", 1, 0)),
    "describe": msg(b"D", b"S" + cstr("s1")),
    "execute": msg(b"E", cstr("") + struct.pack("!i", 0)),
    "sync": msg(b"S", b""),
    "password": msg(b"p", cstr("secret")),
    "copydata": msg(b"d", b"1\t2\n"),
    "copydone": msg(b"c", b""),
    "terminate": msg(b"X", b""),
}
for name, data in seeds.items():
    open(f"fuzz/corpus/wire_messages/{name}", "wb").write(data)
print(f"{n} statements, {q} queries, {len(seeds)} messages")
PY

report=$(mktemp)
for target in "${targets[@]}"; do
  target_runs=$runs; [ "$target" = wire_messages ] && target_runs=$wire_runs
  echo "== fuzzing $target for $target_runs executions"
  log="fuzz/$target.log"
  start=$(date +%s)
  # -max_len: messages up to 64 KiB, statements up to 16 KiB; -rss_limit_mb: a leak or a huge
  # allocation is a finding too.
  max_len=65536; [ "$target" != wire_messages ] && max_len=16384
  [ "$target" = queries ] && rm -f fuzz/queries_internal.log
  status=0
  cargo +nightly fuzz run --sanitizer none "$target" "fuzz/corpus/$target" -- \
    -runs="$target_runs" -max_len="$max_len" -rss_limit_mb=4096 -print_final_stats=1 >"$log" 2>&1 || status=$?
  secs=$(( $(date +%s) - start ))
  done_line=$(grep -E "^#[0-9]+\s+DONE" "$log" | tail -1 || true)
  cov=$(sed -nE 's/.*cov: ([0-9]+).*/\1/p' <<<"$done_line")
  ft=$(sed -nE 's/.*ft: ([0-9]+).*/\1/p' <<<"$done_line")
  corp=$(sed -nE 's/.*corp: ([0-9]+).*/\1/p' <<<"$done_line")
  execs=$(sed -nE 's/^stat::number_of_executed_units: ([0-9]+)/\1/p' "$log" | tail -1)
  if [ "$status" = 0 ]; then findings=none; else findings="crash (exit $status): see $log and fuzz/artifacts/$target/"; fi
  if [ "$target" = queries ] && [ -s fuzz/queries_internal.log ]; then
    internal=$(cut -f2 fuzz/queries_internal.log | sort -u | wc -l)
    findings="$findings; XX000 for $(wc -l < fuzz/queries_internal.log) inputs ($internal distinct messages, fuzz/queries_internal.log)"
  fi
  echo "| \`$target\` | ${execs:-?} | $secs | $(( ${execs:-0} / (secs > 0 ? secs : 1) )) | ${cov:-?} | ${ft:-?} | ${corp:-?} | $findings |" >>"$report"
  tail -5 "$log"
  [ "$status" = 0 ] || { echo "fuzz.sh: $target found a crash; see $log" >&2; }
done

python3 - "$report" <<'PY'
import sys, re, datetime
rows = open(sys.argv[1]).read()
# Rows of targets not run this time stay as they were (with their own date in the text).
path = "docs/benchmarks.md"
text = open(path).read()
old = re.search(r"<!-- bench:fuzz -->.*?<!-- /bench:fuzz -->", text, flags=re.S)
ran = set(re.findall(r"^\| `(\w+)`", rows, flags=re.M))
kept = [l for l in (old.group(0).splitlines() if old else []) if re.match(r"^\| `(\w+)`", l) and re.match(r"^\| `(\w+)`", l).group(1) not in ran]
rows = "".join(l + "\n" for l in kept) + rows
cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
section = f"""<!-- bench:fuzz -->
## Fuzzing: the wire decoder, the statement parser, planning and running (cargo-fuzz, libFuzzer)

Coverage-guided runs of `fuzz/fuzz_targets/*` (nightly rustc's SanitizerCoverage, no sanitizer),
from seeds made of the PostgreSQL regression statements and hand-made protocol messages. Findings:
a panic, an abort, a stack overflow, a leak past 4 GiB of RSS; for `queries` (read-only statements
planned and run against tables of every common type and a view, 250 ms each), also an XX000 error. Reproduce with `scripts/fuzz.sh`
(`HEADWATER_FUZZ_RUNS`, `HEADWATER_FUZZ_WIRE_RUNS` change the counts).
Machine: 2 cores ({cpu}), 24 GiB. Last run {datetime.date.today()}: {", ".join(f"`{t}`" for t in sorted(ran))}{"; the other rows are from earlier runs" if kept else ""}.

| target | executions | seconds | executions/s | coverage (edges) | features | corpus | findings |
|---|---|---|---|---|---|---|---|
{rows}<!-- /bench:fuzz -->"""
if "<!-- bench:fuzz -->" in text:
    text = re.sub(r"<!-- bench:fuzz -->.*?<!-- /bench:fuzz -->", lambda m: section, text, flags=re.S)
else:
    text = text.rstrip("\n") + "\n\n" + section + "\n"
open(path, "w").write(text)
print(section)
PY
