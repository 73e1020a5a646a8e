#!/usr/bin/env bash
# Set up everything the tests need (Debian and PyPI packages) and run lint, types and tests.
set -euo pipefail
cd "$(dirname "$0")"
source scripts/setup.sh
ensure_apt espeak-ng
ensure_venv test
.venv/bin/ruff check src tests bench
.venv/bin/ruff format --check src tests bench
.venv/bin/mypy
exec .venv/bin/python -m pytest "$@"
