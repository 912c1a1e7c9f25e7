#!/usr/bin/env bash
# Prints the path of a Python with the reference stack (tests/reference/requirements.txt, or
# the requirements file given, such as requirements-eap.txt for TransformerLens 4.x), creating
# it in target/reference-venv (target/reference-venv-eap, ...) on first use (about 2.5
# minutes, 6 GB).
set -euo pipefail
cd "$(dirname "$0")/.."
requirements=${1:-tests/reference/requirements.txt}
name=$(basename "$requirements" .txt)
venv=target/reference-venv${name#requirements}
if [ ! -x "$venv/bin/python" ] || ! "$venv/bin/python" -c "import transformer_lens" 2>/dev/null; then
  python3 -m venv "$venv" >&2
  "$venv/bin/pip" install --quiet -r "$requirements" >&2
fi
echo "$PWD/$venv/bin/python"
