#!/usr/bin/env bash
# Set up .venv (scripts/bootstrap.sh) and run the test-suite; extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
exec .venv/bin/python -m pytest "$@"
