#!/usr/bin/env bash
# Builds the page into dist/: index.html, web/, the wasm bundle in pkg/, and the models that
# ship with the app. Prints the bundle's size, raw and gzipped.
set -euo pipefail
cd "$(dirname "$0")/.."

cargo build -p patchbay-web --target wasm32-unknown-unknown --profile wasm
input=target/wasm32-unknown-unknown/wasm/patchbay_web.wasm
pkg=target/web-pkg
wasm=$pkg/patchbay_web_bg.wasm
# wasm-bindgen and wasm-opt take minutes: redo them only when the wasm changed.
stamp=$(sha256sum "$input" | cut -d' ' -f1)
if [ "$(cat "$pkg/stamp" 2>/dev/null)" != "$stamp" ]; then
  rm -rf "$pkg"
  wasm-bindgen --target web --no-typescript --out-dir "$pkg" "$input"
  # Shrink the bundle (binaryen from npm), with the WebAssembly features browsers support.
  node_modules/.bin/wasm-opt -Os --enable-bulk-memory --enable-nontrapping-float-to-int \
    --enable-sign-ext --enable-mutable-globals --enable-reference-types --enable-multivalue \
    --enable-simd "$wasm" -o "$wasm.opt"
  mv "$wasm.opt" "$wasm"
  echo "$stamp" > "$pkg/stamp"
fi

rm -rf dist
mkdir -p dist/models
cp -r "$pkg" dist/pkg
rm dist/pkg/stamp
cp index.html bench.html manifest.webmanifest dist/
cp -r web dist/web
# The models that ship with the app: the trained patchbay-ioi (the default) and the random test
# fixture; and GPT-2's tokenizer, for checkpoints that come without one.
mkdir -p dist/models/patchbay-ioi
cp models/patchbay-ioi/{config.json,model.safetensors,tokenizer.json,circuits.json} dist/models/patchbay-ioi/
cp -r tests/fixtures/models/tiny dist/models/tiny
cp tests/fixtures/models/tiny/tokenizer.json dist/models/gpt2-tokenizer.json
# The service worker precaches every file of the build (and the page's own address), under a
# version that is the hash of them all: after one visit the page works offline.
files=$(cd dist && find . -type f | sort | sed 's|^\./||')
version=$(cd dist && echo "$files" | xargs sha256sum | sha256sum | cut -c1-16)
list=$( (echo './'; echo "$files") | sed 's/.*/"&"/' | paste -sd, -)
sed "s|^const PRECACHE = .*|const PRECACHE = { version: '$version', files: [$list] };|" sw.js > dist/sw.js

raw=$(stat -c %s dist/pkg/patchbay_web_bg.wasm)
gz=$(gzip -9 -c dist/pkg/patchbay_web_bg.wasm | wc -c)
echo "wasm bundle: $raw bytes raw, $gz bytes gzipped"
