#!/usr/bin/env bash
# Regenerate requirements/lock.txt from pyproject.toml with pip-compile (pip-tools): exact
# versions of every runtime, test and build dependency, transitive ones included.
#   scripts/lock.sh            keep the current pins; add or drop what pyproject.toml changed
#   scripts/lock.sh --upgrade  the newest versions pyproject.toml allows (see upgrade-deps.sh)
# Extra arguments go to pip-compile (e.g. --upgrade-package numpy).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup.sh
tools=.cache/pip-tools
if [ ! -x "$tools/bin/pip-compile" ] || ! "$tools/bin/pip-compile" --version | grep -q "$PIP_TOOLS_VERSION"; then
    "$PYTHON" -m venv "$tools"
    _pip_quiet "$tools/bin/python" -m pip install -q "pip==$PIP_VERSION" "pip-tools==$PIP_TOOLS_VERSION"
fi
# pip (not uv) resolves: it takes torch from this machine's local CPU build.
CUSTOM_COMPILE_COMMAND="scripts/lock.sh" _pip_quiet "$tools/bin/pip-compile" --quiet --strip-extras --all-extras --allow-unsafe \
    --all-build-deps --no-emit-index-url --no-emit-find-links \
    --output-file "$LOCK" "$@" pyproject.toml
# The test extra names the project itself (audiototext[offline,server,mic]), which pip-compile
# pins as "audiototext @ file:///<checkout>": drop that entry (the project is installed with
# -e, and the lock must not hold this machine's paths).
awk '/^audiototext @ /{skip=1; next} skip && /^ /{next} {skip=0; print}' "$LOCK" >"$LOCK.tmp"
sed -i "s#file://$PWD\$#audiototext (build)#" "$LOCK.tmp"
mv "$LOCK.tmp" "$LOCK"
echo "wrote $LOCK ($(grep -c '^[a-zA-Z]' "$LOCK") packages)"
