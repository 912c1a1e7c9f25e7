#!/usr/bin/env bash
# Prints the path of a Python with the reference stack (tests/reference/requirements.txt),
# creating it in target/reference-venv on first use (about 2.5 minutes, 6 GB).
set -euo pipefail
cd "$(dirname "$0")/.."
venv=target/reference-venv
if [ ! -x "$venv/bin/python" ] || ! "$venv/bin/python" -c "import transformer_lens" 2>/dev/null; then
  python3 -m venv "$venv" >&2
  "$venv/bin/pip" install --quiet -r tests/reference/requirements.txt >&2
fi
echo "$PWD/$venv/bin/python"
