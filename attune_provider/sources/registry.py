"""One fetch of an http source: its index, then every pack archive it names, verified.

The fetch is all or nothing: the new state is saved only when the index and every
archive it names passed (size, SHA-256, safe extraction, the pack's ref). Anything less
raises, and the source goes on serving its last known good packs (reconcile.py).
"""

from __future__ import annotations

import hashlib
import json
import re
import time
import urllib.parse
from pathlib import Path
from typing import Any, NamedTuple

from attune_provider.exceptions import AttuneError
from attune_provider.language.models import PACK_REF_PATTERN
from attune_provider.language.source import load_yaml_file
from attune_provider.sources.archive import extract_pack
from attune_provider.sources.client import RegistryClient
from attune_provider.sources.store import SourceState, Store, StoredPack

MAX_PACKS = 1000  # entries in one index
MAX_ARCHIVE_BYTES = 64 * 1024 * 1024  # one pack archive, and what it extracts to
SHA256 = re.compile(r"[0-9a-f]{64}")
STATUSES = ("active", "paused")


class RegistryError(AttuneError):
    """index.json is not what a registry serves (docs/sources.md, the index format)."""


class IndexEntry(NamedTuple):
    ref: str
    version: str
    sha256: str
    archive: str
    status: str


def parse_index(body: bytes) -> list[IndexEntry]:
    """The packs an index lists, every entry checked; RegistryError names the first bad one."""
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise RegistryError(f"index.json is not JSON: {exc}") from None
    packs = data.get("packs") if isinstance(data, dict) else None
    if not isinstance(packs, list):
        raise RegistryError('index.json must be an object with a "packs" list')
    if len(packs) > MAX_PACKS:
        raise RegistryError(f"index.json lists {len(packs)} packs, more than the {MAX_PACKS} allowed")
    entries = [_entry(item, index) for index, item in enumerate(packs)]
    refs = [entry.ref for entry in entries]
    twice = sorted({ref for ref in refs if refs.count(ref) > 1})
    if twice:
        raise RegistryError(f"index.json lists pack(s) {', '.join(twice)} more than once")
    return entries


def _entry(item: Any, index: int) -> IndexEntry:
    where = f"index.json packs[{index}]"
    if not isinstance(item, dict):
        raise RegistryError(f"{where} is not an object")
    ref, sha, archive = item.get("ref"), item.get("sha256"), item.get("archive")
    status, version = item.get("status", "active"), item.get("version", "")
    if not isinstance(ref, str) or not PACK_REF_PATTERN.match(ref):
        raise RegistryError(f"{where}: 'ref' must be a pack ref (^[a-z0-9_]+$), got {ref!r}")
    if not isinstance(sha, str) or not SHA256.fullmatch(sha.lower()):
        raise RegistryError(f"{where} ({ref}): 'sha256' must be 64 hex digits")
    if not isinstance(archive, str) or not archive.strip():
        raise RegistryError(f"{where} ({ref}): 'archive' must name the pack's .tar.gz")
    if status not in STATUSES:
        raise RegistryError(f"{where} ({ref}): 'status' must be 'active' or 'paused', got {status!r}")
    return IndexEntry(ref, str(version), sha.lower(), archive, status)


def _archive_url(base: str, archive: str) -> str:
    """The archive's URL: relative to the registry, or absolute on the registry's host."""
    url = urllib.parse.urljoin(base + "/", archive)
    if urllib.parse.urlsplit(url).netloc != urllib.parse.urlsplit(base).netloc:
        raise RegistryError(f"archive {archive!r} is not on the registry's host")
    return url


def _declared_ref(pack_dir: Path, max_file_bytes: int) -> Any:
    """The `ref` pack.yaml declares, read as the loader reads it (size limit included)."""
    data = load_yaml_file(pack_dir / "pack.yaml", str(pack_dir / "pack.yaml"), max_file_bytes).data
    return data.get("ref") if isinstance(data, dict) else None


def _pack_dir(target: Path) -> Path:
    """The directory holding pack.yaml in an extracted archive (extract_pack made sure of one)."""
    if (target / "pack.yaml").is_file():
        return target
    return next(child for child in sorted(target.iterdir()) if (child / "pack.yaml").is_file())


def _stored(
    client: RegistryClient, store: Store, base: str, entry: IndexEntry, max_file_bytes: int
) -> StoredPack:
    """The pack of one index entry, extracted in the store (downloaded unless it is there)."""
    target = store.object_dir(entry.sha256)
    if not target.is_dir():
        body = client.get(_archive_url(base, entry.archive), MAX_ARCHIVE_BYTES)
        digest = hashlib.sha256(body).hexdigest()
        if digest != entry.sha256:
            raise RegistryError(
                f"pack {entry.ref}: the archive's sha256 is {digest}, the index says {entry.sha256}"
            )
        extract_pack(body, target, max_file_bytes=max_file_bytes, max_total_bytes=MAX_ARCHIVE_BYTES)
    pack_dir = _pack_dir(target)
    declared = _declared_ref(pack_dir, max_file_bytes)
    if declared != entry.ref:
        raise RegistryError(f"pack {entry.ref}: its archive holds pack {declared!r}")
    relative = pack_dir.relative_to(store.root).as_posix()
    return StoredPack(entry.ref, entry.version, entry.sha256, entry.status, relative)


def fetch(
    base: str, token: str | None, store: Store, deadline: float, max_file_bytes: int
) -> tuple[SourceState, int]:
    """The source's new state after a successful fetch, and how many requests it took."""
    client = RegistryClient(token, deadline)
    try:
        entries = parse_index(client.get(f"{base}/index.json", max_file_bytes))
        packs = tuple(_stored(client, store, base, entry, max_file_bytes) for entry in entries)
    finally:
        client.close()
    now = time.time()
    return SourceState(packs, fetched_at=now, checked_at=now), client.attempts
