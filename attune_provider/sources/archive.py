"""Pack archives: the `.tar.gz` of one pack directory that a pack registry serves.

`pack_archive` gives the same bytes for the same files, so a registry's sha256 changes only
when a pack does. `extract_pack` treats an archive as hostile: it checks every member (name,
type, link target, size) in memory before writing anything, writes the files itself with
fixed modes, and renames a finished temporary directory into place, so no reader (another
process included) ever sees a half-extracted pack. Standard library only: no Airflow.
"""

from __future__ import annotations

import errno
import gzip
import io
import os
import posixpath
import shutil
import tarfile
import tempfile
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import NamedTuple

from attune_provider.exceptions import AttuneError

FILE_MODE, DIR_MODE = 0o644, 0o755
SKIPPED = frozenset({"__pycache__", ".git"})  # never archived, nor any *.pyc
_HEADER_ALLOWANCE = 4096  # decompressed bytes a member may take besides its data
_MAX_LINK_HOPS = 40
_CHUNK = 1 << 16
_SPECIAL = {tarfile.CHRTYPE: "character device", tarfile.BLKTYPE: "block device", tarfile.FIFOTYPE: "fifo"}
CORRUPT = "truncated or not a .tar.gz"


class ArchiveError(AttuneError):
    """A pack archive cannot be built or used; the message names the member and the fault."""


def _refuse(name: str, fault: str) -> ArchiveError:
    return ArchiveError(f"archive member '{name}': {fault}" if name else f"archive: {fault}")


# --- building ---------------------------------------------------------------------------------


def pack_archive(pack_dir: Path) -> bytes:
    """A deterministic `.tar.gz` of `pack_dir`, its members under a top directory of its name."""
    root = Path(os.path.abspath(pack_dir))
    if not (root / "pack.yaml").is_file():
        raise ArchiveError(f"{pack_dir}: no pack.yaml: not a pack directory")
    entries = sorted(_pack_entries(root, root.name, os.path.realpath(root)))
    buffer = io.BytesIO()
    with gzip.GzipFile(filename="", mode="wb", fileobj=buffer, mtime=0) as compressed:
        with tarfile.open(fileobj=compressed, mode="w", format=tarfile.PAX_FORMAT) as tar:
            for name, source in entries:
                _add(tar, name, source)
    return buffer.getvalue()


def _pack_entries(directory: Path, name: str, real_root: str) -> Iterator[tuple[str, Path | None]]:
    """(member name, file to store or None for a directory) of `directory` and below."""
    yield name, None
    for child in directory.iterdir():
        if child.name in SKIPPED or child.name.endswith(".pyc"):
            continue
        member = f"{name}/{child.name}"
        if child.is_symlink():
            yield member, _link_target(child, member, real_root)
        elif child.is_dir():
            yield from _pack_entries(child, member, real_root)
        elif child.is_file():
            yield member, child
        else:
            raise _refuse(member, "not a regular file or directory (only those are archived)")


def _link_target(link: Path, member: str, real_root: str) -> Path:
    """The file a symlink inside the pack points to: archived as that file's content."""
    target = os.path.realpath(link)
    if os.path.commonpath([target, real_root]) != real_root:
        raise _refuse(member, f"symlink to '{os.readlink(link)}' points outside the pack")
    if not os.path.isfile(target):
        raise _refuse(member, f"symlink to '{os.readlink(link)}' is not a file (only files are linked)")
    return Path(target)


def _add(tar: tarfile.TarFile, name: str, source: Path | None) -> None:
    info = tarfile.TarInfo(name)
    info.mtime, info.uid, info.gid, info.uname, info.gname = 0, 0, 0, "", ""
    if source is None:
        info.type, info.mode = tarfile.DIRTYPE, DIR_MODE
        tar.addfile(info)
        return
    data = source.read_bytes()
    info.mode, info.size = FILE_MODE, len(data)
    tar.addfile(info, io.BytesIO(data))


# --- extracting: checks -------------------------------------------------------------------------


_Members = list[tuple[str, tarfile.TarInfo]]


class _Plan(NamedTuple):
    """What to write: each name with the regular member holding its data (None: a directory)."""

    root: str  # the pack directory inside dest: "" when pack.yaml is at the top
    entries: list[tuple[str, tarfile.TarInfo | None]]


def _gunzip(data: bytes, limit: int) -> bytes:
    """The decompressed archive, refused past `limit` bytes (a gzip bomb stops here)."""
    out, rest = bytearray(), data
    try:
        while True:  # gzip allows several members back to back
            inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
            out += inflater.decompress(rest, limit - len(out) + 1)
            if len(out) > limit or inflater.unconsumed_tail:
                raise _refuse("", f"expands to more than {limit} bytes")
            if not inflater.eof:
                raise _refuse("", f"{CORRUPT} (the gzip stream ends early)")
            rest = inflater.unused_data
            if not rest.strip(b"\0"):
                return bytes(out)
    except zlib.error as exc:
        raise _refuse("", f"{CORRUPT} ({exc})")


def _members(tar: tarfile.TarFile, size: int, max_members: int, max_file_bytes: int) -> _Members:
    """Each member with its clean name, checked one by one as the archive is read."""
    found: _Members = []
    try:
        for member in tar:
            if len(found) == max_members:
                raise _refuse("", f"more than {max_members} members")
            name = _clean_name(member)
            _check_type_and_size(member, name, max_file_bytes)
            if member.offset_data + member.size > size:
                raise _refuse(member.name, f"{CORRUPT} (its data ends past the archive's end)")
            found.append((name, member))
    except (tarfile.TarError, EOFError) as exc:
        raise _refuse("", f"{CORRUPT} ({exc})")
    return found


def _clean_name(member: tarfile.TarInfo) -> str:
    """The member's path inside the archive, without '.' components or trailing slashes."""
    if member.name.startswith(("/", "\\")):
        raise _refuse(member.name, "absolute path")
    parts = [part for part in member.name.split("/") if part not in ("", ".")]
    if ".." in parts:
        raise _refuse(member.name, "'..' in its path")
    return "/".join(parts)


def _check_type_and_size(member: tarfile.TarInfo, name: str, max_file_bytes: int) -> None:
    if member.issparse() or not (member.isdir() or member.isreg() or member.issym() or member.islnk()):
        kind = "sparse file" if member.issparse() else _SPECIAL.get(member.type, f"type {member.type!r}")
        raise _refuse(name, f"{kind} not allowed (only files, directories and links)")
    if member.isreg() and member.size > max_file_bytes:
        raise _refuse(name, f"{member.size} bytes, over the {max_file_bytes}-byte limit per file")


def _index(members: _Members) -> dict[str, tarfile.TarInfo]:
    """Members by clean name (the archive's root '.' left out), one entry per path."""
    by_name: dict[str, tarfile.TarInfo] = {}
    for name, member in members:
        if not name and member.isdir():
            continue
        previous = by_name.get(name)
        if not name or (previous is not None and not (previous.isdir() and member.isdir())):
            raise _refuse(member.name, "appears twice (or names the archive's root)")
        by_name[name] = member
    for name in by_name:
        parent = posixpath.dirname(name)
        while parent:
            if parent in by_name and not by_name[parent].isdir():
                raise _refuse(name, f"is below '{parent}', which is not a directory")
            parent = posixpath.dirname(parent)
    return by_name


def _layout(by_name: dict[str, tarfile.TarInfo]) -> str:
    """The pack directory inside the archive: "" (pack.yaml at the top) or its one top entry."""
    files = {name for name, member in by_name.items() if not member.isdir()}
    if "pack.yaml" in files:
        return ""
    tops = sorted({name.split("/")[0] for name in by_name})
    if len(tops) > 1:
        shown = ", ".join(tops[:5]) + (", ..." if len(tops) > 5 else "")
        raise _refuse("", f"more than one top-level entry ({shown}): an archive holds one pack directory")
    if not tops or f"{tops[0]}/pack.yaml" not in files:
        raise _refuse("", "no pack.yaml (at the top or in its single top-level directory)")
    return tops[0]


def _inside(path: str, root: str) -> bool:
    if path == ".." or path.startswith(("../", "/")):
        return False
    return not root or path == root or path.startswith(root + "/")


def _resolve(name: str, by_name: dict[str, tarfile.TarInfo], root: str) -> tarfile.TarInfo:
    """The regular member a link leads to, through links, never leaving the pack."""
    current_name, current = name, by_name[name]
    for _ in range(_MAX_LINK_HOPS):
        if not (current.issym() or current.islnk()):
            return current
        link = current.linkname
        base = posixpath.dirname(current_name) if current.issym() else ""
        target = posixpath.normpath(posixpath.join(base, link)) if link else ""
        if not link or link.startswith("/") or not _inside(target, root):
            raise _refuse(name, f"link to '{link}' points outside the pack")
        current_name = target
        found = by_name.get(current_name)
        if found is None or found.isdir():
            raise _refuse(name, f"link to '{link}' does not lead to a file in the archive")
        current = found
    raise _refuse(name, f"more than {_MAX_LINK_HOPS} links in a row")


def _plan(members: _Members, dest: Path, max_file_bytes: int, max_total_bytes: int) -> _Plan:
    by_name = _index(members)
    root = _layout(by_name)
    entries: list[tuple[str, tarfile.TarInfo | None]] = []
    total = 0
    for name, member in by_name.items():
        source = None if member.isdir() else _resolve(name, by_name, root)
        try:
            tarfile.data_filter(member, os.path.abspath(dest))  # Python's filter="data" as well
        except tarfile.FilterError as exc:
            raise _refuse(name, f"refused by tarfile's data filter: {exc}")
        if source is not None and source.size > max_file_bytes:
            raise _refuse(name, f"{source.size} bytes, over the {max_file_bytes}-byte limit per file")
        total += source.size if source is not None else 0
        if total > max_total_bytes:
            raise _refuse("", f"files over the {max_total_bytes}-byte limit in all (at '{name}')")
        entries.append((name, source))
    return _Plan(root, entries)


# --- extracting: writing ------------------------------------------------------------------------


def extract_pack(
    data: bytes, dest: Path, *, max_file_bytes: int, max_total_bytes: int, max_members: int = 10_000
) -> Path:
    """Check the archive `data`, extract it to `dest` (which must not exist yet) and return
    the pack directory in it. When `dest` appears meanwhile (another process extracted the
    same content), it is used as is. Raises ArchiveError, leaving nothing on disk."""
    limit = max_total_bytes + _HEADER_ALLOWANCE * (max_members + 1) + 2 * tarfile.RECORDSIZE
    raw = _gunzip(data, limit)
    try:
        tar = tarfile.open(fileobj=io.BytesIO(raw), mode="r:")
    except (tarfile.TarError, EOFError) as exc:
        raise _refuse("", f"{CORRUPT} ({exc})")
    with tar:
        members = _members(tar, len(raw), max_members, max_file_bytes)
        plan = _plan(members, dest, max_file_bytes, max_total_bytes)
        dest.parent.mkdir(parents=True, exist_ok=True)
        temporary = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", suffix=".partial", dir=dest.parent))
        try:
            _write(tar, plan, temporary, max_file_bytes, max_total_bytes)
        except BaseException:
            shutil.rmtree(temporary, ignore_errors=True)
            raise
        _publish(temporary, dest)
    pack = dest / plan.root if plan.root else dest
    if not (pack / "pack.yaml").is_file():
        raise ArchiveError(f"{dest} exists but has no {plan.root or '.'}/pack.yaml: not this archive")
    return pack


def _write(tar: tarfile.TarFile, plan: _Plan, into: Path, max_file_bytes: int, max_total_bytes: int) -> None:
    """Write the planned entries below `into`, counting the bytes actually written."""
    written = 0
    for name, source in plan.entries:
        path = into.joinpath(*name.split("/"))
        if source is None:
            path.mkdir(parents=True, exist_ok=True)
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        limit = min(max_file_bytes, max_total_bytes - written)
        written += _write_file(tar, source, path, name, limit)
    for directory, _, _ in os.walk(into):  # modes from the archive are never trusted
        os.chmod(directory, DIR_MODE)


def _write_file(tar: tarfile.TarFile, source: tarfile.TarInfo, path: Path, name: str, limit: int) -> int:
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)
    count = 0
    with os.fdopen(os.open(path, flags, FILE_MODE), "wb") as out:
        os.fchmod(out.fileno(), FILE_MODE)
        try:
            reader = tar.extractfile(source)
            while reader is not None and (chunk := reader.read(_CHUNK)):
                count += len(chunk)
                if count > limit:
                    raise _refuse(name, f"more than {limit} bytes written: over the size limits")
                out.write(chunk)
        except (tarfile.TarError, EOFError) as exc:
            raise _refuse(name, f"{CORRUPT} ({exc})")
    return count


def _publish(temporary: Path, dest: Path) -> None:
    """Rename the finished directory to `dest`; if another process got there first, keep its."""
    try:
        os.rename(temporary, dest)
    except OSError as exc:
        shutil.rmtree(temporary, ignore_errors=True)
        if exc.errno not in (errno.EEXIST, errno.ENOTEMPTY):
            raise
