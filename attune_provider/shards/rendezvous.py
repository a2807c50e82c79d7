"""Rendezvous (highest random weight) hashing of workflow refs over shards.

Each (ref, shard) pair gets a pseudo-random score; a ref belongs to the shard with the
highest score among the shards offered. Removing a shard moves only its own refs (each to
its next-highest shard), adding one takes from each other shard only the refs that now
score highest on it: about 1/N of them, and no others. Pure Python, no Airflow.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence


def queue_name(shard: int) -> str:
    """The Celery queue of shard `shard`."""
    return f"attune-shard-{shard}"


def score(ref: str, shard: int) -> int:
    """The weight of `shard` for `ref`: 64 bits of BLAKE2b of both (stable across processes)."""
    digest = hashlib.blake2b(f"{shard}\0{ref}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big")


def ranking(ref: str, shards: Iterable[int]) -> list[int]:
    """The shards in `ref`'s order of preference (highest score first, ties by index)."""
    return sorted(shards, key=lambda shard: (-score(ref, shard), shard))


def assign(ref: str, shards: Sequence[int], live: Iterable[int] | None = None) -> int:
    """The shard of `ref` among `shards`: the first of its ranking that is live (all are when
    `live` is None); when none is live, its first choice (its tasks wait for it)."""
    if not shards:
        raise ValueError("no shard to assign to")
    order = ranking(ref, shards)
    if live is not None:
        alive = set(live)
        for shard in order:
            if shard in alive:
                return shard
    return order[0]
