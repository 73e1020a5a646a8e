#!/usr/bin/env bash
# Set up everything the tests need (Debian and PyPI packages) and run lint, types and tests.
set -euo pipefail
cd "$(dirname "$0")"
source scripts/setup.sh
# espeak-ng: test speech; pulseaudio & co.: a virtual microphone for the PortAudio test;
# openssl: self-signed certificates for the TLS tests.
ensure_apt espeak-ng pulseaudio pulseaudio-utils libasound2-plugins libportaudio2 openssl
ensure_venv test
lint_paths=(src tests)
[ -d bench ] && lint_paths+=(bench)
.venv/bin/ruff check "${lint_paths[@]}"
.venv/bin/ruff format --check "${lint_paths[@]}"
.venv/bin/mypy
exec .venv/bin/python -m pytest "$@"
