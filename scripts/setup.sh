#!/usr/bin/env bash
# Installs what Patchbay's build and tests need, skipping whatever is already there.
#   scripts/setup.sh web    the wasm target, wasm-bindgen-cli (the version in Cargo.lock), npm tools
#   scripts/setup.sh test   all of the above, plus Debian's chromium and lavapipe (Vulkan on the CPU)
# Debian as root; safe to run again.
set -euo pipefail
cd "$(dirname "$0")/.."
mode=${1:-test}

if [ "$mode" = test ]; then
  packages=()
  command -v chromium >/dev/null || packages+=(chromium)
  [ -e /usr/share/vulkan/icd.d/lvp_icd.x86_64.json ] || packages+=(mesa-vulkan-drivers)
  if [ ${#packages[@]} -gt 0 ]; then
    echo "== apt-get install ${packages[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${packages[@]}" >/dev/null
  fi
fi

rustup target list --installed | grep -q '^wasm32-unknown-unknown$' || rustup target add wasm32-unknown-unknown

# wasm-bindgen's CLI must match the wasm-bindgen crate exactly.
wanted=$(awk '/^name = "wasm-bindgen"$/ { getline; gsub(/"/, "", $3); print $3 }' Cargo.lock)
have=$(wasm-bindgen --version 2>/dev/null | awk '{ print $2 }' || true)
if [ "$have" != "$wanted" ]; then
  echo "== cargo install wasm-bindgen-cli $wanted (about 4 minutes)"
  cargo install wasm-bindgen-cli --version "$wanted"
fi

if [ ! -x node_modules/.bin/wasm-opt ] || [ ! -d node_modules/playwright-core ]; then
  echo "== npm ci"
  npm ci --no-audit --no-fund --loglevel=error
fi
