"""Pack archives (attune_provider/sources/archive.py): deterministic builds, hostile archives refused."""

from __future__ import annotations

import gzip
import io
import multiprocessing
import os
import stat
import tarfile
from pathlib import Path

import pytest

from attune_provider.sources.archive import ArchiveError, extract_pack, pack_archive

LIMITS = {"max_file_bytes": 1000, "max_total_bytes": 5000}
PACK_YAML = b"ref: p\nversion: 1.0.0\n"


def write_pack(root: Path) -> Path:
    pack = root / "p"
    (pack / "workflows").mkdir(parents=True)
    (pack / "empty").mkdir()
    (pack / "pack.yaml").write_bytes(PACK_YAML)
    (pack / "workflows" / "hello.yaml").write_text("ref: p.hello\n")
    (pack / "actions").mkdir()
    (pack / "actions" / "tool.py").write_text("print('hi')\n")
    (pack / "actions" / "tool.py").chmod(0o700)
    return pack


def files_of(directory: Path) -> dict[str, bytes | None]:
    """Every entry below `directory`: file content, or None for a directory."""
    return {
        path.relative_to(directory).as_posix(): None if path.is_dir() else path.read_bytes()
        for path in sorted(directory.rglob("*"))
    }


def craft(*members: tuple[tarfile.TarInfo, bytes | None]) -> bytes:
    """A .tar.gz of exactly these members (data None: no content)."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz", format=tarfile.PAX_FORMAT) as tar:
        for info, data in members:
            if data is not None:
                info.size = len(data)
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    return buffer.getvalue()


def file(name: str, data: bytes = b"x") -> tuple[tarfile.TarInfo, bytes]:
    return tarfile.TarInfo(name), data


def special(name: str, kind: bytes, linkname: str = "", size: int = 0) -> tuple[tarfile.TarInfo, None]:
    info = tarfile.TarInfo(name)
    info.type, info.linkname, info.size = kind, linkname, size
    return info, None


def valid_members(*extra: tuple[tarfile.TarInfo, bytes | None]) -> bytes:
    return craft(special("p", tarfile.DIRTYPE), file("p/pack.yaml", PACK_YAML), *extra)


def left_in(parent: Path) -> list[str]:
    return sorted(path.name for path in parent.iterdir()) if parent.exists() else []


# --- round trip ------------------------------------------------------------------------------------


def test_round_trip_gives_the_same_files_with_fixed_modes(tmp_path):
    pack = write_pack(tmp_path / "src")
    extracted = extract_pack(pack_archive(pack), tmp_path / "store" / "abc", **LIMITS)
    assert extracted == tmp_path / "store" / "abc" / "p"
    assert files_of(extracted) == files_of(pack)
    assert stat.S_IMODE((extracted / "actions" / "tool.py").stat().st_mode) == 0o644
    assert stat.S_IMODE((extracted / "empty").stat().st_mode) == 0o755
    assert stat.S_IMODE((tmp_path / "store" / "abc").stat().st_mode) == 0o755
    assert left_in(tmp_path / "store") == ["abc"]  # no temporary directory left


def test_archive_is_deterministic_and_normalised(tmp_path):
    first = write_pack(tmp_path / "one")
    second = write_pack(tmp_path / "two")
    os.utime(second / "pack.yaml", (1, 1))
    (second / "pack.yaml").chmod(0o600)
    data = pack_archive(first)
    assert data == pack_archive(first) == pack_archive(second)
    assert data[4:8] == b"\0\0\0\0"  # the gzip header's mtime
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        members = tar.getmembers()
    names = [m.name for m in members]
    assert names == sorted(names) and names[0] == "p"
    assert {(m.mtime, m.uid, m.gid, m.uname, m.gname) for m in members} == {(0, 0, 0, "", "")}
    assert {m.name: m.mode for m in members}["p/actions/tool.py"] == 0o644
    assert {m.name: m.mode for m in members}["p/empty"] == 0o755


def test_archive_skips_caches_and_git_and_stores_inner_symlinks_as_files(tmp_path):
    pack = write_pack(tmp_path)
    (pack / "actions" / "__pycache__").mkdir()
    (pack / "actions" / "__pycache__" / "tool.cpython-311.pyc").write_bytes(b"\0")
    (pack / "actions" / "old.pyc").write_bytes(b"\0")
    (pack / ".git").mkdir()
    (pack / ".git" / "HEAD").write_text("ref: main\n")
    (pack / "workflows" / "alias.yaml").symlink_to("hello.yaml")
    with tarfile.open(fileobj=io.BytesIO(pack_archive(pack))) as tar:
        members = {m.name: m for m in tar.getmembers()}
        alias = tar.extractfile("p/workflows/alias.yaml")
        assert alias is not None and alias.read() == b"ref: p.hello\n"
    assert members["p/workflows/alias.yaml"].isreg()
    assert not [name for name in members if "pycache" in name or ".pyc" in name or ".git" in name]


def test_archive_refuses_a_symlink_out_of_the_pack(tmp_path):
    pack = write_pack(tmp_path)
    (tmp_path / "secret").write_text("s")
    (pack / "leak.yaml").symlink_to(tmp_path / "secret")
    message = r"archive member 'p/leak.yaml': symlink to '.*secret' points outside the pack"
    with pytest.raises(ArchiveError, match=message):
        pack_archive(pack)


def test_archive_refuses_a_directory_without_pack_yaml(tmp_path):
    with pytest.raises(ArchiveError, match="no pack.yaml"):
        pack_archive(tmp_path)


def test_pack_yaml_at_the_top_extracts_into_dest_itself(tmp_path):
    data = craft(file("pack.yaml", PACK_YAML), file("workflows/w.yaml", b"ref: p.w\n"))
    assert extract_pack(data, tmp_path / "d", **LIMITS) == tmp_path / "d"
    assert (tmp_path / "d" / "workflows" / "w.yaml").read_bytes() == b"ref: p.w\n"


def test_inner_links_are_extracted_as_regular_files(tmp_path):
    data = valid_members(
        file("p/a.yaml", b"A"),
        special("p/sym.yaml", tarfile.SYMTYPE, "a.yaml"),
        special("p/hard.yaml", tarfile.LNKTYPE, "p/a.yaml"),
    )
    pack = extract_pack(data, tmp_path / "d", **LIMITS)
    for name in ("sym.yaml", "hard.yaml"):
        assert not (pack / name).is_symlink() and (pack / name).read_bytes() == b"A"


# --- refusals ------------------------------------------------------------------------------------

REFUSALS = {
    "dotdot": (valid_members(file("p/../../evil")), r"archive member 'p/../../evil': '..' in its path"),
    "absolute": (valid_members(file("/etc/evil")), r"archive member '/etc/evil': absolute path"),
    "symlink_out": (
        valid_members(special("p/passwd", tarfile.SYMTYPE, "/etc/passwd")),
        r"archive member 'p/passwd': link to '/etc/passwd' points outside the pack",
    ),
    "symlink_up": (
        valid_members(special("p/up", tarfile.SYMTYPE, "../../x")),
        r"archive member 'p/up': link to '../../x' points outside the pack",
    ),
    "hardlink_out": (
        valid_members(special("p/hard", tarfile.LNKTYPE, "../outside")),
        r"archive member 'p/hard': link to '../outside' points outside the pack",
    ),
    "device": (
        valid_members(special("p/dev", tarfile.CHRTYPE)),
        r"archive member 'p/dev': character device not allowed",
    ),
    "fifo": (
        valid_members(special("p/fifo", tarfile.FIFOTYPE)),
        r"archive member 'p/fifo': fifo not allowed",
    ),
    "big_member": (
        valid_members(file("p/big", b"x" * 1001)),
        r"archive member 'p/big': 1001 bytes, over the 1000-byte limit per file",
    ),
    "big_total": (
        valid_members(*(file(f"p/f{i}", b"x" * 1000) for i in range(5))),
        r"archive: files over the 5000-byte limit in all",
    ),
    "too_many": (
        valid_members(*(file(f"p/f{i}") for i in range(20))),
        r"archive: more than 20 members",
    ),
    "no_pack_yaml": (
        craft(special("p", tarfile.DIRTYPE), file("p/workflows/w.yaml")),
        r"archive: no pack.yaml \(at the top or in its single top-level directory\)",
    ),
    "two_tops": (
        craft(file("p/pack.yaml", PACK_YAML), file("q/pack.yaml", PACK_YAML)),
        r"archive: more than one top-level entry \(p, q\): an archive holds one pack directory",
    ),
    "not_gzip": (b"hello, not an archive", r"archive: truncated or not a \.tar\.gz \(.*header"),
    "plain_tar": (gzip.decompress(valid_members()), r"archive: truncated or not a \.tar\.gz"),
    "truncated": (
        valid_members(file("p/data", os.urandom(800)))[:-100],
        r"archive: truncated or not a \.tar\.gz \(the gzip stream ends early\)",
    ),
    "gzip_not_tar": (gzip.compress(b"\1" * 2000), r"archive: truncated or not a \.tar\.gz"),
    "empty": (b"", r"archive: truncated or not a \.tar\.gz"),
}


@pytest.mark.parametrize("case", sorted(REFUSALS))
def test_refused_archives_leave_nothing_behind(tmp_path, case):
    data, message = REFUSALS[case]
    store = tmp_path / "store"
    store.mkdir()
    with pytest.raises(ArchiveError, match=message):
        extract_pack(data, store / "d", max_file_bytes=1000, max_total_bytes=5000, max_members=20)
    assert left_in(store) == []
    assert not Path("/etc/evil").exists()


def test_declared_sizes_are_checked_before_anything_is_written(tmp_path):
    """A huge declared size is refused at once, however little data follows it."""
    info = tarfile.TarInfo("p/huge")
    info.size = 10**12
    header = info.tobuf(tarfile.PAX_FORMAT)
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        pack_yaml = tarfile.TarInfo("p/pack.yaml")
        pack_yaml.size = len(PACK_YAML)
        tar.addfile(pack_yaml, io.BytesIO(PACK_YAML))
    data = gzip.compress(buffer.getvalue()[: -2 * tarfile.RECORDSIZE] + header)
    with pytest.raises(ArchiveError, match=r"'p/huge': 1000000000000 bytes, over the 1000-byte limit"):
        extract_pack(data, tmp_path / "d", **LIMITS)
    assert left_in(tmp_path) == []


def test_a_gzip_bomb_is_refused_without_expanding_it(tmp_path):
    data = gzip.compress(b"\0" * 50_000_000)
    with pytest.raises(ArchiveError, match=r"archive: expands to more than \d+ bytes"):
        extract_pack(data, tmp_path / "d", max_file_bytes=1000, max_total_bytes=1000, max_members=10)
    assert left_in(tmp_path) == []


def test_a_link_to_a_directory_or_a_missing_member_is_refused(tmp_path):
    for target, name in (("workflows", "dir_link"), ("nothing", "dangling")):
        link = special(f"p/{name}", tarfile.SYMTYPE, target)
        data = valid_members(special("p/workflows", tarfile.DIRTYPE), link)
        with pytest.raises(ArchiveError, match=f"'p/{name}': link to '{target}' does not lead to a file"):
            extract_pack(data, tmp_path / "d", **LIMITS)
    assert left_in(tmp_path) == []


# --- concurrency -----------------------------------------------------------------------------------


def test_dest_extracted_by_another_process_first_is_used(tmp_path):
    data = pack_archive(write_pack(tmp_path / "src"))
    dest = tmp_path / "store" / "sha"
    first = extract_pack(data, dest, **LIMITS)
    (first / "marker").write_text("the first extraction")  # proves the second one kept it
    assert extract_pack(data, dest, **LIMITS) == first
    assert (first / "marker").read_text() == "the first extraction"
    assert left_in(tmp_path / "store") == ["sha"]


def _extract(args: tuple[bytes, str]) -> str:
    return str(extract_pack(args[0], Path(args[1]), **LIMITS))


def test_several_processes_extracting_at_once_all_get_the_pack(tmp_path):
    pack = write_pack(tmp_path / "src")
    data, dest = pack_archive(pack), tmp_path / "store" / "sha"
    with multiprocessing.get_context("spawn").Pool(6) as pool:
        results = pool.map(_extract, [(data, str(dest))] * 12)
    assert set(results) == {str(dest / "p")}
    assert files_of(dest / "p") == files_of(pack)
    assert left_in(tmp_path / "store") == ["sha"]
