#!/usr/bin/env bash
# One entry point for a fresh machine:
#   bash tools/run.sh demo   # the main job on the embedded default (no download)
#   bash tools/run.sh test   # the test suite
# Each installs what it needs into .venv beside this repository first (skipped when already up
# to date). The demo writes runs/ and exports/ under the current directory.
set -euo pipefail
here="$PWD"
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
VENV="$root/.venv"
cmd="${1:-demo}"; shift || true
case "$cmd" in
    demo) extra="" ;;
    test) extra="[test]" ;;
    *) echo "usage: bash tools/run.sh {demo|test} [args]" >&2; exit 2 ;;
esac

want="$(cat pyproject.toml constraints.txt | sha256sum | cut -d' ' -f1)"
installed() {  # the test install holds everything the demo needs
    [ -x "$VENV/bin/python" ] || return 1
    for kind in "$cmd" test; do
        [ "$(cat "$VENV/.kres-installed-$kind" 2>/dev/null)" = "$want" ] && return 0
    done
    return 1
}
if ! installed; then
    echo "== installing kres${extra} and its dependencies into $VENV (once)"
    [ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
    log="$VENV/install.log"
    if ! { "$VENV/bin/python" -m pip install --upgrade pip &&
           "$VENV/bin/python" -m pip install -c constraints.txt -e ".${extra}"; } > "$log" 2>&1; then
        tail -n 40 "$log" >&2
        echo "== installation failed; the whole log is in $log" >&2
        exit 1
    fi
    echo "$want" > "$VENV/.kres-installed-$cmd"
fi
export PYTHONPATH="$root${PYTHONPATH:+:$PYTHONPATH}"
export TF_CPP_MIN_LOG_LEVEL="${TF_CPP_MIN_LOG_LEVEL:-2}"
case "$cmd" in
    demo) cd "$here"; exec "$VENV/bin/python" "$root/tools/demo.py" "$@" ;;
    test) exec "$VENV/bin/python" -m pytest -n 2 --dist loadgroup "$@" ;;
esac
