#!/usr/bin/env bash
# Builds Patchbay's page and serves it on http://localhost:${PORT:-8080}/ (installing what the
# build needs first). The page opens on the small model that ships with the app.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh web
scripts/build-web.sh
echo "Open the printed address in a browser with WebGPU (Chrome, Edge); Ctrl-C stops."
exec node tests/e2e/server.mjs dist "${PORT:-8080}"
