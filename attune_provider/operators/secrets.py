"""Registering secret values with Airflow's masker so they show as *** everywhere."""

from __future__ import annotations

from typing import Any


def mask(value: Any) -> None:
    """Mask a secret (strings inside lists and mappings too); None and booleans are ignored."""
    if value is None or isinstance(value, bool):
        return
    if isinstance(value, dict):
        for item in value.values():
            mask(item)
        return
    if isinstance(value, (list, tuple)):
        for item in value:
            mask(item)
        return
    from airflow.sdk.log import mask_secret

    mask_secret(str(value))
