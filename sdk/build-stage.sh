#!/usr/bin/env bash
# Builds a Python or JavaScript weir stage into a WebAssembly component.
#
#   sdk/build-stage.sh python DIR OUT.wasm   # DIR holds app.py (WitWorld = weir_stage.export(...))
#   sdk/build-stage.sh js DIR OUT.wasm       # DIR holds stage.js (or package.json "main")
#
# The toolchains are the pinned ones `./dev setup` installs:
#   WEIR_PY_TOOLCHAIN (default ~/.cache/weir/py-toolchain): a venv with componentize-py 0.25.1
#   WEIR_JS_TOOLCHAIN (default ~/.cache/weir/js-toolchain): node_modules with componentize-js 0.23.0 and esbuild
# This is the recipe `weir build` runs; it prints the component's path, size
# and build time.
set -euo pipefail
sdk=$(cd "$(dirname "$0")" && pwd)

if [ $# -ne 3 ]; then
    echo "usage: $0 python|js DIR OUT.wasm" >&2
    exit 2
fi
lang=$1
dir=$(cd "$2" && pwd)
mkdir -p "$(dirname "$3")"
out=$(cd "$(dirname "$3")" && pwd)/$(basename "$3")

case "$lang" in
python | py)
    py=${WEIR_PY_TOOLCHAIN:-$HOME/.cache/weir/py-toolchain}
    if [ ! -x "$py/bin/componentize-py" ]; then
        echo "error: componentize-py is not installed in $py; run ./dev setup in a weir checkout, or: python3 -m venv $py && $py/bin/pip install componentize-py==0.25.1" >&2
        exit 1
    fi
    if [ ! -f "$dir/app.py" ]; then
        echo "error: $dir has no app.py: a Python stage is a module app.py that ends with \`WitWorld = weir_stage.export(YourStage)\`" >&2
        exit 1
    fi
    # The stage's directory, its vendored packages (pip install --target deps ...)
    # if any, and the SDK. VIRTUAL_ENV is unset so that an activated venv's
    # site-packages (pytest...) is not packed into the component.
    paths=(-p "$dir")
    [ -d "$dir/deps" ] && paths+=(-p "$dir/deps")
    paths+=(-p "$sdk/python/src")
    start=$(date +%s%N)
    (cd "$dir" && env -u VIRTUAL_ENV "$py/bin/componentize-py" -q -d "$sdk/wit" -w stage componentize "${paths[@]}" -o "$out" app)
    ms=$((($(date +%s%N) - start) / 1000000))
    size=$(stat -c %s "$out")
    printf 'built %s (%s.%s MB) from %s/app.py in %s.%s s\n' "$out" $((size / 1000000)) $((size / 100000 % 10)) "$dir" $((ms / 1000)) $((ms / 100 % 10)) >&2
    ;;
js | javascript)
    if ! command -v node >/dev/null; then
        echo "error: node is not installed; install Node.js 20 or later (Debian: apt-get install nodejs npm)" >&2
        exit 1
    fi
    node "$sdk/js/build/componentize.mjs" "$dir" "$sdk/wit" "$out"
    ;;
*)
    echo "error: unknown language \"$lang\": use python or js" >&2
    exit 2
    ;;
esac
