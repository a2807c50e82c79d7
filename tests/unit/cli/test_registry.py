"""`attune-airflow registry build DIR OUT` (attune_provider/cli/registry.py)."""

from __future__ import annotations

import argparse
import hashlib
import json
from pathlib import Path

import pytest

from attune_provider.cli.registry import add_registry_parser, registry_main
from attune_provider.sources.archive import extract_pack

LIMITS = {"max_file_bytes": 1 << 20, "max_total_bytes": 1 << 22}
WORKFLOW = """\
ref: {pack}.hello
tasks:
  - name: say
    action: core.echo
    input: {{message: hi}}
"""


def write_pack(packs: Path, name: str, version: str = "1.0.0", workflow: str = WORKFLOW) -> Path:
    directory = packs / name
    (directory / "workflows").mkdir(parents=True)
    (directory / "pack.yaml").write_text(f"ref: {name}\nversion: {version}\n")
    (directory / "workflows" / "hello.yaml").write_text(workflow.format(pack=name))
    return directory


def build(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, list[str], str]:
    """Parse `registry build ARGV` with the command's own parser and run it."""
    parser = argparse.ArgumentParser(prog="attune-airflow")
    add_registry_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["registry", "build", *argv])
    assert args.handler is registry_main
    code = args.handler(args)
    out, err = capsys.readouterr()
    return code, out.splitlines(), err


def files_of(directory: Path) -> dict[str, bytes]:
    found = sorted(path for path in directory.rglob("*") if path.is_file())
    return {path.relative_to(directory).as_posix(): path.read_bytes() for path in found}


@pytest.fixture
def packs(tmp_path: Path, settings_env: None) -> Path:
    directory = tmp_path / "packs"
    write_pack(directory, "beta", version="2.1.0")
    write_pack(directory, "alpha")
    return directory


def test_build_writes_archives_and_a_sorted_index(packs, tmp_path, capsys):
    out = tmp_path / "registry"
    code, lines, _ = build(capsys, str(packs), str(out))
    assert code == 0
    index = json.loads((out / "index.json").read_text())
    assert [(p["ref"], p["version"], p["archive"], p["status"]) for p in index["packs"]] == [
        ("alpha", "1.0.0", "alpha-1.0.0.tar.gz", "active"),
        ("beta", "2.1.0", "beta-2.1.0.tar.gz", "active"),
    ]
    assert all(list(p) == ["ref", "version", "sha256", "archive", "status"] for p in index["packs"])
    for pack in index["packs"]:
        data = (out / pack["archive"]).read_bytes()
        assert pack["sha256"] == hashlib.sha256(data).hexdigest()
        extracted = extract_pack(data, tmp_path / "store" / pack["sha256"], **LIMITS)
        assert extracted.name == pack["ref"]
        assert files_of(extracted) == files_of(packs / pack["ref"])
    written = sorted(path.name for path in out.iterdir())
    assert written == ["alpha-1.0.0.tar.gz", "beta-2.1.0.tar.gz", "index.json"]  # no temporary file
    assert lines == [
        f"{p['ref']} {p['version']} {p['sha256'][:12]} {p['archive']} {p['status']}" for p in index["packs"]
    ]


def test_rebuilding_unchanged_packs_gives_the_same_registry(packs, tmp_path, capsys):
    assert build(capsys, str(packs), str(tmp_path / "one"))[0] == 0
    assert build(capsys, str(packs), str(tmp_path / "two"))[0] == 0
    assert files_of(tmp_path / "one") == files_of(tmp_path / "two")


def test_paused_marks_those_packs_paused(packs, tmp_path, capsys):
    code, lines, _ = build(capsys, str(packs), str(tmp_path / "out"), "--paused", "beta")
    assert code == 0
    index = json.loads((tmp_path / "out" / "index.json").read_text())
    assert {p["ref"]: p["status"] for p in index["packs"]} == {"alpha": "active", "beta": "paused"}
    assert lines[1].startswith("beta 2.1.0 ") and lines[1].endswith(" beta-2.1.0.tar.gz paused")


def test_paused_naming_no_pack_is_a_usage_error(packs, tmp_path, capsys):
    code, _, err = build(capsys, str(packs), str(tmp_path / "out"), "--paused", "gamma")
    assert code == 2
    assert "--paused gamma: no such pack" in err
    assert not (tmp_path / "out").exists()


def test_dir_that_is_one_pack(packs, tmp_path, capsys):
    code, lines, _ = build(capsys, str(packs / "alpha"), str(tmp_path / "out"))
    assert code == 0 and len(lines) == 1 and lines[0].startswith("alpha 1.0.0 ")
    index = json.loads((tmp_path / "out" / "index.json").read_text())
    assert [p["ref"] for p in index["packs"]] == ["alpha"]


def test_an_invalid_pack_reports_as_validate_does_and_writes_nothing(packs, tmp_path, capsys):
    write_pack(packs, "gamma", workflow=WORKFLOW.replace("core.echo", "core.ecoh"))
    code, lines, err = build(capsys, str(packs), str(tmp_path / "out"))
    assert code == 1
    where = f"{packs}/gamma/workflows/hello.yaml:4:13"
    assert lines == [f"{where}: error: unknown action 'core.ecoh' (did you mean 'core.echo'?)"]
    assert err.strip() == "1 error, 0 warnings"
    assert not (tmp_path / "out").exists()


def test_a_pack_without_version_is_an_error_and_writes_nothing(packs, tmp_path, capsys):
    (packs / "alpha" / "pack.yaml").write_text("ref: alpha\n")
    code, lines, _ = build(capsys, str(packs), str(tmp_path / "out"))
    assert code == 1
    assert len(lines) == 1
    assert lines[0].startswith(f"{packs}/alpha/pack.yaml:1:1: error: pack 'alpha': no version")
    assert not (tmp_path / "out").exists()


def test_a_version_unfit_for_a_file_name_is_an_error(packs, tmp_path, capsys):
    (packs / "alpha" / "pack.yaml").write_text("ref: alpha\nversion: ../1\n")
    code, lines, _ = build(capsys, str(packs), str(tmp_path / "out"))
    assert code == 1
    where = f"{packs}/alpha/pack.yaml:2:10"
    assert lines[0].startswith(f"{where}: error: pack 'alpha': version '../1' must match")
    assert not (tmp_path / "out").exists()


def test_no_pack_in_dir_is_an_error(tmp_path, settings_env, capsys):
    (tmp_path / "empty").mkdir()
    code, _, err = build(capsys, str(tmp_path / "empty"), str(tmp_path / "out"))
    assert code == 1 and "no pack in" in err
    assert not (tmp_path / "out").exists()


def test_a_pack_symlink_out_of_the_pack_fails_before_any_write(packs, tmp_path, capsys):
    (tmp_path / "secret").write_text("s")
    (packs / "beta" / "leak.txt").symlink_to(tmp_path / "secret")
    code, _, err = build(capsys, str(packs), str(tmp_path / "out"))
    assert code == 1
    assert "archive member 'beta/leak.txt': symlink to" in err and "points outside the pack" in err
    assert not (tmp_path / "out").exists()
