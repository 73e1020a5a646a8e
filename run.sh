#!/usr/bin/env bash
# Set up audiototext and run it with the offline default model (Whisper tiny.en).
set -euo pipefail
cd "$(dirname "$0")"
source scripts/setup.sh
ensure_venv offline
.venv/bin/audiototext models pull tiny.en
exec .venv/bin/audiototext models list
