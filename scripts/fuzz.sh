#!/usr/bin/env bash
# Coverage-guided fuzzing (issue 30) with cargo-fuzz (libFuzzer) of the two paths every client
# byte takes before a statement runs:
#   wire_messages  the framing check + pgwire's frontend message decoder (src/pgwire/framing.rs)
#   statements     the statement parser with its compatibility rewrites and complexity limits
# The parser runs HEADWATER_FUZZ_RUNS executions (default 1,000,000; ~6,000/s), the wire target
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
[ ${#targets[@]} -gt 0 ] || targets=(wire_messages statements)
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
n = 0
for path in sorted(glob.glob("tests/pg_regress/sql/*.sql")):
    for stmt in open(path, encoding="utf-8", errors="replace").read().split(";\n"):
        stmt = stmt.strip()
        if stmt and n < 3000:
            open(f"fuzz/corpus/statements/seed{n:05}", "w").write(stmt)
            n += 1
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
print(f"{n} statements, {len(seeds)} messages")
PY

report=$(mktemp)
for target in "${targets[@]}"; do
  target_runs=$runs; [ "$target" = wire_messages ] && target_runs=$wire_runs
  echo "== fuzzing $target for $target_runs executions"
  log="fuzz/$target.log"
  start=$(date +%s)
  # -max_len: messages up to 64 KiB, statements up to 16 KiB; -rss_limit_mb: a leak or a huge
  # allocation is a finding too.
  max_len=65536; [ "$target" = statements ] && max_len=16384
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
  echo "| \`$target\` | ${execs:-?} | $secs | $(( ${execs:-0} / (secs > 0 ? secs : 1) )) | ${cov:-?} | ${ft:-?} | ${corp:-?} | $findings |" >>"$report"
  tail -5 "$log"
  [ "$status" = 0 ] || { echo "fuzz.sh: $target found a crash; see $log" >&2; }
done

python3 - "$report" <<'PY'
import sys, re, datetime
rows = open(sys.argv[1]).read()
section = f"""<!-- bench:fuzz -->
## Fuzzing: the wire decoder and the statement parser (cargo-fuzz, libFuzzer)

Coverage-guided runs of `fuzz/fuzz_targets/*` (nightly rustc's SanitizerCoverage, no sanitizer),
from seeds made of the PostgreSQL regression statements and hand-made protocol messages. Findings:
a panic, an abort, a stack overflow, a leak past 4 GiB of RSS. Reproduce with `scripts/fuzz.sh`
(`HEADWATER_FUZZ_RUNS`, `HEADWATER_FUZZ_WIRE_RUNS` change the counts).
Machine: 2 cores (AMD EPYC), 24 GiB. Run {datetime.date.today()}.

| target | executions | seconds | executions/s | coverage (edges) | features | corpus | findings |
|---|---|---|---|---|---|---|---|
{rows}<!-- /bench:fuzz -->"""
path = "docs/benchmarks.md"
text = open(path).read()
if "<!-- bench:fuzz -->" in text:
    text = re.sub(r"<!-- bench:fuzz -->.*?<!-- /bench:fuzz -->", lambda m: section, text, flags=re.S)
else:
    text = text.rstrip("\n") + "\n\n" + section + "\n"
open(path, "w").write(text)
print(section)
PY
