#!/usr/bin/env bash
# Runs every Patchbay test, installing what they need first (Debian, as root):
#   - formatting;
#   - Rust: model, patching and CLI, against the committed TransformerLens/HF references, on the
#     CPU backend and on wgpu (lavapipe, Vulkan on the CPU, where there is no GPU);
#   - the page in headless Chromium: WebGPU (SwiftShader) and the CPU fallback.
# The page's wasm build runs in the background beside the Rust tests (its own profile, so the two
# cargo builds do not wait for each other): its serial steps (linking, wasm-bindgen, wasm-opt)
# then overlap the native build instead of leaving a core idle.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh test

mkdir -p target
web_log=target/build-web.log
setsid scripts/build-web.sh > "$web_log" 2>&1 &
web=$!
trap 'kill -- -"$web" 2>/dev/null || true' EXIT

echo "== cargo fmt --check"
cargo fmt --all -- --check

echo "== Rust tests"
cargo test --release --workspace --exclude patchbay-web

echo "== the page (wasm build)"
if ! wait "$web"; then
  cat "$web_log"
  echo "the wasm build failed" >&2
  exit 1
fi
trap - EXIT
cat "$web_log"

echo "== browser tests (headless Chromium)"
node --test --test-concurrency=1 tests/e2e/
