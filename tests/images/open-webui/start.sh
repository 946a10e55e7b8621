#!/usr/bin/env bash
# Entry point of the Open WebUI test image (mirrors the official start.sh:
# an empty WEBUI_SECRET_KEY means "generate one and keep it in a file").
set -euo pipefail
cd /app/backend
if [ -z "${WEBUI_SECRET_KEY:-}" ]; then
  unset WEBUI_SECRET_KEY
fi
exec open-webui serve --host "${HOST:-0.0.0.0}" --port "${PORT:-8080}"
