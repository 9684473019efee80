#!/usr/bin/env bash
# Set up (if needed) and run the whole test suite plus the architecture contracts.
set -euo pipefail
cd "$(dirname "$0")/.."
bash installer/setup.sh
.venv/bin/lint-imports --no-cache
exec .venv/bin/python -m pytest -q "$@"
