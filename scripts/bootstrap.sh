#!/usr/bin/env bash
# Create .venv with the exact pinned set (requirements/lock.txt) and the provider itself.
# Idempotent: a second run only re-checks. Needs python3 (3.10+) and the package registry.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"
UV_VERSION="0.13.9"
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
if [ ! -x .venv/bin/uv ]; then
  .venv/bin/python -m pip install --quiet --disable-pip-version-check "uv==${UV_VERSION}"
fi
stamp=".venv/.attune-lock"
if [ ! -f "$stamp" ] || ! cmp -s requirements/lock.txt "$stamp"; then
  .venv/bin/uv pip install --quiet --compile-bytecode --python .venv/bin/python -r requirements/lock.txt
  cp requirements/lock.txt "$stamp"
fi
.venv/bin/uv pip install --quiet --python .venv/bin/python --no-deps -e .
# Bytecode now, once: where PYTHONDONTWRITEBYTECODE is set (as here) every process would
# otherwise compile Airflow and the provider from source (seconds per process).
.venv/bin/python -m compileall -q attune_provider >/dev/null
