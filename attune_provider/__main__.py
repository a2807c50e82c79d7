"""`python -m attune_provider` is the `attune-airflow` command."""

from __future__ import annotations

from attune_provider.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
