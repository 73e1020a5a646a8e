#!/usr/bin/env bash
# Set up everything the tests need (Debian and PyPI packages, every PyPI one at the version
# requirements/lock.txt names) and run lint, types and tests. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")"
source scripts/setup.sh
# espeak-ng: test speech; pulseaudio & co.: a virtual microphone for the PortAudio test;
# openssl: self-signed certificates for the TLS tests; chromium: the page in a real browser;
# prometheus: scrapes /metrics in the observability tests. iproute2: network namespaces for
# the WebRTC tests (ICE needs an address other than 127.0.0.1). debootstrap: a minimal Debian
# root (no Python) the one-file build must run in (tests/binary). UPX (upx-ucl) is not in
# Debian 12: scripts/build-binary.sh uses it only where it is installed. redis-server and
# haproxy: the session-store tests start their own (tests/support/services.py).
# pocketsphinx-testdata: recordings of people reading, with transcripts (batched transcription).
ensure_apt espeak-ng pulseaudio pulseaudio-utils libasound2-plugins libportaudio2 openssl chromium \
    prometheus iproute2 procps debootstrap redis-server haproxy pocketsphinx-testdata
ensure_venv test
lint_paths=(src tests deploy)
[ -d bench ] && lint_paths+=(bench)
"$VENV/bin/ruff" check "${lint_paths[@]}"
"$VENV/bin/ruff" format --check "${lint_paths[@]}"
"$VENV/bin/mypy"
# Test files run in parallel, one worker per core (a file's tests stay on one worker, so
# module-scoped engines load once; PYTEST_WORKERS=0 runs them in this process). Tests marked
# realtime (speech-paced streams into the real engine) then run alone in a fresh process:
# beside other work, or after it in a worker that ran it, they measured the machine.
# RAY_TESTS=0 leaves out the tests marked ray (they start a local Ray cluster); CI runs them.
skip_ray=""
[ "${RAY_TESTS:-1}" = 0 ] && skip_ray=" and not ray"
status=0
"$VENV/bin/python" -m pytest -n "${PYTEST_WORKERS:-auto}" --dist loadfile \
    -m "not realtime$skip_ray" "$@" || status=$?
realtime=0
"$VENV/bin/python" -m pytest -m "realtime$skip_ray" "$@" || realtime=$?
# 5: the arguments selected no test in that phase.
[ "$status" -eq 5 ] && status=0
[ "$realtime" -eq 5 ] && realtime=0
[ "$status" -ne 0 ] && exit "$status"
exit "$realtime"
