#!/usr/bin/env bash
# Worst-case memory and time of hostile specs, each under `prlimit --as=4G` (a benchmark, not a
# test): every spec below is one a stranger could put in a link. Prints one line per spec: its
# name, the exit status, the CLI's first line of error, peak RSS and wall time.
#
#   bench/hostile.sh [path/to/patchbay]
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${1:-target/release/patchbay}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

base='"model": {"embedded": "patchbay-ioi"}, "prompts": [{"clean": "When Mary and John went to the store, John gave a drink to", "corrupted": "When Mary and John went to the store, Mary gave a drink to", "answer": " Mary", "counter_answer": " John"}], "metric": {"kind": "logit_diff"}'
ioi='"model": {"embedded": "patchbay-ioi"}, "prompts": [], "metric": {"kind": "logit_diff"}'
spec() { echo "{\"version\": 1, $2}" > "$work/$1.json"; }
spec samples-1e9 "$base, \"target\": {\"component\": \"resid_pre\", \"positions\": \"each\"}, \"corruption\": {\"method\": \"gn\", \"positions\": [], \"samples\": 1000000000}"
spec samples-u64max "$base, \"target\": {\"component\": \"resid_pre\", \"positions\": \"each\"}, \"corruption\": {\"method\": \"gn\", \"positions\": [], \"samples\": 18446744073709551615}"
spec dataset-n-1e9 "$ioi, \"dataset\": {\"task\": \"ioi\", \"n\": 1000000000}, \"target\": {\"component\": \"z\", \"positions\": \"all\"}, \"corruption\": {\"method\": \"str\"}"
spec scale-1e308 "$base, \"target\": {\"component\": \"resid_pre\", \"positions\": \"each\"}, \"corruption\": {\"method\": \"gn\", \"positions\": [], \"scale\": 1e308}"
spec sigma-negative "$base, \"target\": {\"component\": \"resid_pre\", \"positions\": \"each\"}, \"corruption\": {\"method\": \"str\"}, \"detect\": {\"sigma\": -1}"
python3 - "$work" <<'PY'
import json, sys
work = sys.argv[1]
base = {"version": 1, "model": {"embedded": "patchbay-ioi"},
        "prompts": [{"clean": "When Mary and John went to the store, John gave a drink to",
                     "corrupted": "When Mary and John went to the store, Mary gave a drink to",
                     "answer": " Mary", "counter_answer": " John"}],
        "metric": {"kind": "logit_diff"},
        "target": {"component": "resid_pre", "positions": "each"}}
def write(name, spec):
    json.dump(spec, open(f"{work}/{name}.json", "w"))
write("positions-1e6", {**base, "corruption": {"method": "gn", "positions": [2] * 1_000_000}})
long = json.loads(json.dumps(base)); long["prompts"][0]["clean"] = "a " * 1_500_000
long["corruption"] = {"method": "str"}
write("prompt-3MB", long)
# The largest dataset the limits accept (1,000 IOI prompts, every head at every position, 64 GN
# samples): `expand` measures its preparation (generation, tokenizing, checks) alone, and
# `largest-run` the first minute of running it (exit 124: stopped by the timeout).
write("largest-dataset", {**base, "prompts": [], "dataset": {"task": "ioi", "n": 1000},
                          "target": {"component": "z", "positions": "each"},
                          "corruption": {"method": "gn", "positions": [], "samples": 64}})
write("largest-run", json.load(open(f"{work}/largest-dataset.json")))
PY
head -c 20000000 /dev/zero | tr '\0' ' ' > "$work/spec-20MB.json"

printf '%-18s %4s %10s %8s  %s\n' spec exit peak_MiB wall_s message
for f in "$work"/*.json; do
  name=$(basename "$f" .json)
  cmd=(run "$f" --json)
  limit=()
  if [ "$name" = largest-dataset ]; then cmd=(expand "$f"); fi
  # The largest accepted run takes hours on a CPU: its memory is measured over its first minute.
  if [ "$name" = largest-run ]; then limit=(timeout 60); fi
  set +e
  /usr/bin/time -f '%M %e' -o "$work/time" "${limit[@]}" prlimit --as=$((4 << 30)) "$bin" "${cmd[@]}" \
    > /dev/null 2> "$work/err"
  status=$?
  set -e
  read -r kb secs < <(tail -1 "$work/time")
  msg=$(grep -v '^Command exited' "$work/err" | grep -v '^\s*$' | head -1 | cut -c1-110 || true)
  printf '%-18s %4s %10.1f %8s  %s\n' "$name" "$status" "$(echo "$kb / 1024" | bc -l)" "$secs" "$msg"
done
