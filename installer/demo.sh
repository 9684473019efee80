#!/usr/bin/env bash
# Set everything up and run the station in demo mode: simulated camera, SQLite record,
# a model calibrated and trained from simulated good parts on the first run, sync rows
# queued in the local outbox. State lives in var/demo (delete it to start afresh).
set -euo pipefail
cd "$(dirname "$0")/.."
bash installer/setup.sh
exec .venv/bin/linestation --data-dir "${LINESTATION_DATA_DIR:-var/demo}" \
  inspect --config resources/demo.yaml --count "${COUNT:-40}" "$@"
