#!/usr/bin/env bash
# The long runs of the randomized oracles and fuzzers that the test command runs briefly
# (scripts/test.sh keeps CI under 30 minutes). Each size can be overridden from the
# environment; a failure prints its seed and case like the short runs do.
#
#   scripts/soak.sh            every oracle and fuzzer at soak sizes (~1-2 h on 2 cores)
#   scripts/soak.sh NAME...    only these test names (cargo test filters), same sizes
#
# Sizes (test command → soak): views oracle 5 → 60 random cases (HEADWATER_VIEW_CASES);
# SQL fuzzer 3,000 → 100,000 statements (HEADWATER_FUZZ_STATEMENTS); Postgres differential
# 400 → 20,000 generated queries (HEADWATER_DIFF_QUERIES); wire fuzzer 500 → 5,000
# connections (HEADWATER_WIRE_FUZZ); TPC-H scale 0.01 → 0.1 (HEADWATER_TPCH_SCALE); the 64-client
# privileges + ingestion soak 12 → 200 rounds per client (HEADWATER_SOAK_ROUNDS).
set -euo pipefail
cd "$(dirname "$0")/.."
export HEADWATER_VIEW_CASES="${HEADWATER_VIEW_CASES:-60}"
export HEADWATER_FUZZ_STATEMENTS="${HEADWATER_FUZZ_STATEMENTS:-100000}"
export HEADWATER_DIFF_QUERIES="${HEADWATER_DIFF_QUERIES:-20000}"
export HEADWATER_WIRE_FUZZ="${HEADWATER_WIRE_FUZZ:-5000}"
export HEADWATER_TPCH_SCALE="${HEADWATER_TPCH_SCALE:-0.1}"
export HEADWATER_SOAK_ROUNDS="${HEADWATER_SOAK_ROUNDS:-200}"
names=("$@")
[ ${#names[@]} -gt 0 ] || names=(views_oracle sql_fuzz pg_differential framing::mutated tpch soak::)
start=$(date +%s)
for name in "${names[@]}"; do
  echo "== $name"
  cargo test --release --quiet --test integration -- --test-threads 1 "$name"
done
echo "== soak passed in $(( $(date +%s) - start ))s"
