#!/usr/bin/env bash
# Set everything up and run the station in demo mode: simulated camera, SQLite record,
# a model calibrated and trained from simulated good parts on the first run, sync rows
# queued in the local outbox. State lives in var/demo (delete it to start afresh).
#
# With a display (DISPLAY or WAYLAND_DISPLAY set) this opens the station window
# (`linestation demo`); without one, or with HEADLESS=1, or with arguments for the
# headless run (e.g. --json), it runs COUNT inspections in the terminal instead.
set -euo pipefail
cd "$(dirname "$0")/.."
bash installer/setup.sh
data_dir="${LINESTATION_DATA_DIR:-var/demo}"
if [ $# -eq 0 ] && [ -z "${HEADLESS:-}" ]; then
  if [ -n "${DISPLAY:-}" ] || [ -n "${WAYLAND_DISPLAY:-}" ]; then
    exec .venv/bin/linestation --data-dir "$data_dir" demo
  fi
  echo "demo.sh: no display (DISPLAY / WAYLAND_DISPLAY not set), so the station window cannot" \
       "open; running ${COUNT:-40} inspections headless instead. On a desktop, the same command" \
       "opens the window." >&2
fi
exec .venv/bin/linestation --data-dir "$data_dir" \
  inspect --config resources/demo.yaml --count "${COUNT:-40}" "$@"
