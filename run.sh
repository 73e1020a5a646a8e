#!/usr/bin/env bash
# Set up audiototext and run the server with the offline default model (Whisper tiny.en).
# Extra arguments go to `audiototext serve` (e.g. ./run.sh --port 50052). Transcripts are kept
# in $AUDIOTOTEXT_HOME/history.sqlite3 (`audiototext history list`; --history PATH moves it).
set -euo pipefail
cd "$(dirname "$0")"
source scripts/setup.sh
ensure_venv offline,server,mic
.venv/bin/audiototext models pull tiny.en
exec .venv/bin/audiototext serve --history "$@"
