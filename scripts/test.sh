#!/usr/bin/env bash
# Runs every Patchbay test, installing what they need first (Debian, as root):
#   - formatting;
#   - Rust: model, patching and CLI, against the committed TransformerLens/HF references, on the
#     CPU backend and on wgpu (lavapipe, Vulkan on the CPU, where there is no GPU);
#   - the page in headless Chromium: WebGPU (SwiftShader) and the CPU fallback.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh test

echo "== cargo fmt --check"
cargo fmt --all -- --check

echo "== Rust tests"
cargo test --release --workspace --exclude patchbay-web

echo "== the page (wasm build)"
scripts/build-web.sh

echo "== browser tests (headless Chromium)"
node --test --test-concurrency=1 tests/e2e/
