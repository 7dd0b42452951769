#!/usr/bin/env bash
# One entry point for a fresh machine:
#   bash tools/run.sh demo   # the main job on the embedded default (no download)
#   bash tools/run.sh test   # the test suite
# Each installs what it needs into ./.venv first (skipped when already up to date).
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=.venv
STAMP="$VENV/.kres-install-stamp"
want="$(cat pyproject.toml constraints.txt | sha256sum | cut -d' ' -f1)"
if [ ! -x "$VENV/bin/python" ] || [ "$(cat "$STAMP" 2>/dev/null)" != "$want" ]; then
    echo "== installing kres and its dependencies into $VENV"
    python3 -m venv "$VENV"
    "$VENV/bin/python" -m pip install -q --upgrade pip
    "$VENV/bin/python" -m pip install -q -c constraints.txt -e ".[test]"
    echo "$want" > "$STAMP"
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
export TF_CPP_MIN_LOG_LEVEL="${TF_CPP_MIN_LOG_LEVEL:-2}"
cmd="${1:-demo}"; shift || true
case "$cmd" in
    demo) exec "$VENV/bin/python" tools/demo.py "$@" ;;
    test) exec "$VENV/bin/python" -m pytest -n 2 --dist loadgroup "$@" ;;
    *) echo "usage: bash tools/run.sh {demo|test} [args]" >&2; exit 2 ;;
esac
