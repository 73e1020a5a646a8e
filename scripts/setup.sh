# Shared set-up steps for run.sh, test.sh and the lock scripts (sourced, not executed).
# Idempotent: installs only what is missing, so a second run takes seconds.

PYTHON=${PYTHON:-python3}
VENV=${VENV:-.venv}
# Every runtime, test and build dependency at an exact version (scripts/lock.sh writes it).
LOCK=requirements/lock.txt
# The installer and the lock's own tool are pinned too: a new pip or pip-tools can resolve
# or write differently.
PIP_VERSION=26.3
PIP_TOOLS_VERSION=7.7.0

ensure_apt() {
    # ensure_apt PKG... : install Debian packages that are not installed yet.
    local missing=()
    for pkg in "$@"; do
        dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    if ! command -v apt-get >/dev/null 2>&1; then
        echo "warning: apt-get not found; install these yourself: ${missing[*]}" >&2
        return 0
    fi
    local sudo=""
    [ "$(id -u)" -ne 0 ] && sudo="sudo"
    echo "installing Debian packages: ${missing[*]}"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

_pip_quiet() {
    # pip without the warnings this machine's extra package indexes print for every
    # package they lack; real errors still show.
    "$@" 2> >(grep -v "is ignored: it is neither a file nor a directory" >&2)
}

ensure_venv() {
    # ensure_venv EXTRAS : create $VENV and install the package with the given extras, every
    # dependency at the version $LOCK names. Reinstalls when pyproject.toml or $LOCK change.
    local extras=$1
    if [ ! -x "$VENV/bin/python" ]; then
        "$PYTHON" -m venv "$VENV"
    fi
    local stamp="$VENV/.installed-$extras"
    if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ] || [ "$LOCK" -nt "$stamp" ]; then
        echo "installing audiototext[$extras] into $VENV from $LOCK"
        _pip_quiet "$VENV/bin/python" -m pip install -q "pip==$PIP_VERSION"
        _pip_quiet "$VENV/bin/python" -m pip install -q -c "$LOCK" --build-constraint "$LOCK" \
            -e ".[$extras]"
        touch "$stamp"
    fi
}
