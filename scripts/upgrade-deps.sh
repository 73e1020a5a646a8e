#!/usr/bin/env bash
# Run on purpose, now and then: move requirements/lock.txt to the newest releases that
# pyproject.toml allows, run the whole suite on them in a separate venv (.venv-upgrade, so
# .venv stays as it was), and show what changed. A passing run leaves the new lock in place
# to review and commit; a failing one puts the old lock back and keeps the candidate beside it.
# Exact pins in pyproject.toml (code generators such as grpcio-tools) do not move here: bump
# one by hand, regenerate its output (proto/generate.py) and run this again.
# Extra arguments go to pytest (e.g. scripts/upgrade-deps.sh -x).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup.sh
old=$(mktemp)
cp "$LOCK" "$old"
bash scripts/lock.sh --upgrade
echo "== what changed in $LOCK (< old, > new)"
if diff <(grep '==' "$old") <(grep '==' "$LOCK"); then
    echo "nothing: every dependency is at its newest allowed release"
fi
echo "== exact pins in pyproject.toml (not moved):"
grep -E '"[A-Za-z0-9_.-]+(\[[^]]*\])?==' pyproject.toml | tr -d ' ,' || true
echo "== the whole suite on the new lock (venv .venv-upgrade)"
if VENV=.venv-upgrade bash test.sh "$@"; then
    echo "passed: review 'git diff $LOCK' and commit it"
else
    cp "$LOCK" "$LOCK.candidate"
    cp "$old" "$LOCK"
    echo "failed on the new lock: $LOCK is back as it was; the candidate is $LOCK.candidate" >&2
    exit 1
fi
