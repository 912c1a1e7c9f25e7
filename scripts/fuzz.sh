#!/usr/bin/env bash
# Runs every fuzz test of the workspace for N minutes in all, from a fresh random base seed:
#
#   scripts/fuzz.sh --minutes N [--seed S]
#
# The convention (how to add a fuzz test that this script and CI both run):
#   - it lives in an integration-test file named `tests/fuzz_*.rs` of a workspace crate other
#     than patchbay-web (for example `crates/patching/tests/fuzz_spec.rs`);
#   - each fuzz test function in that file is named `fuzz_*` (for example `fn fuzz_spec_parser()`);
#   - it drives `patchbay_model::fuzz::Fuzz` (a dev-dependency on patchbay-model with the `fuzz`
#     feature): `Fuzz::new("fuzz_spec_parser").run(|case| ...)` builds each input from
#     `case.rng`, `mutate_bytes`, `mutate_json` or `random_text`, and returns `Err` (or panics)
#     on a wrong outcome.
# `Fuzz` reads three variables: PATCHBAY_FUZZ_SECONDS (per test; unset, 4 s, which is what a
# plain `cargo test --release` and CI run), PATCHBAY_FUZZ_SEED (the base seed; unset, 0) and
# PATCHBAY_FUZZ_CASE (replay one case). A failure prints its seed, case and input, and the
# command that reproduces it.
#
# This script lists the `fuzz_*` tests of the `tests/fuzz_*.rs` targets, gives each an equal
# share of the N minutes, and runs them one at a time so that each has the machine.
set -euo pipefail
cd "$(dirname "$0")/.."

minutes=""
seed=$(od -An -N8 -tu8 /dev/urandom | tr -d ' ')
while [ $# -gt 0 ]; do
  case "$1" in
    --minutes) minutes="$2"; shift 2 ;;
    --seed) seed="$2"; shift 2 ;;
    *) echo "usage: scripts/fuzz.sh --minutes N [--seed S]" >&2; exit 2 ;;
  esac
done
if ! [[ "$minutes" =~ ^[0-9]+([.][0-9]+)?$ ]]; then
  echo "usage: scripts/fuzz.sh --minutes N [--seed S]" >&2
  exit 2
fi

targets=(--release --workspace --exclude patchbay-web --test 'fuzz_*')
cargo test "${targets[@]}" --no-run
tests=$(cargo test "${targets[@]}" -- --list --format terse fuzz_ 2>/dev/null | grep -c '^fuzz_.*: test$' || true)
if [ "$tests" -eq 0 ]; then
  echo "no fuzz_* tests found in tests/fuzz_*.rs" >&2
  exit 1
fi
seconds=$(awk -v m="$minutes" -v n="$tests" 'BEGIN { printf "%.1f", m * 60 / n }')
echo "== $tests fuzz tests, $seconds s each, PATCHBAY_FUZZ_SEED=$seed"
PATCHBAY_FUZZ_SEED="$seed" PATCHBAY_FUZZ_SECONDS="$seconds" \
  cargo test "${targets[@]}" -- fuzz_ --test-threads=1 --nocapture
