"""Fixtures of the validator and CLI tests: small packs written into tmp_path."""

from __future__ import annotations

import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from attune_provider.dag_factory.loader import load_catalog
from attune_provider.dag_factory.validation.checks import Report, validate_catalog
from attune_provider.language.catalog import Catalog
from tests.registry_server import Registry

SETTINGS_ENV = (
    "AIRFLOW__ATTUNE__PACKS_PATH",
    "AIRFLOW__ATTUNE__MAX_FILE_BYTES",
    "AIRFLOW__ATTUNE__MAX_SUBWORKFLOW_DEPTH",
)


class PackWriter:
    """Writes packs below `<tmp_path>/packs` (the current directory is tmp_path)."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def pack(self, ref: str = "p", files: dict[str, str] | None = None, meta: str | None = None) -> Path:
        """A pack directory `ref` with pack.yaml (`meta`, or a minimal one) and `files`."""
        directory = self.root / ref
        directory.mkdir(parents=True, exist_ok=True)
        self.write(directory / "pack.yaml", meta if meta is not None else f"ref: {ref}\nversion: '1.0'\n")
        for name, text in (files or {}).items():
            self.write(directory / name, text)
        return directory

    @staticmethod
    def write(path: Path, text: str) -> Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text).lstrip("\n"), encoding="utf-8")
        return path

    def catalog(self) -> Catalog:
        return load_catalog([Path("packs")])

    def validate(self, max_depth: int = 5) -> Report:
        return validate_catalog(self.catalog(), max_depth=max_depth)

    def problems(self, file: str | None = None, max_depth: int = 5) -> list[str]:
        """`LINE:COL: severity: message` of each problem (in `file`, relative to packs/)."""
        found = []
        for problem in self.validate(max_depth).problems:
            where = problem.location
            if file is None or where.file == f"packs/{file}":
                prefix = "" if file is not None else f"{where.file}:"
                found.append(f"{prefix}{where.line}:{where.col}: {problem.severity.value}: {problem.message}")
        return found


@pytest.fixture
def settings_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """No packs path from the environment, and Airflow's options empty (so never imported)."""
    monkeypatch.delenv("ATTUNE_PACKS_PATH", raising=False)
    for name in SETTINGS_ENV:
        monkeypatch.setenv(name, "")


@pytest.fixture
def packs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, settings_env: None) -> Iterator[PackWriter]:
    """A PackWriter for `<tmp_path>/packs`, run from tmp_path so files show as packs/..."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "packs").mkdir()
    yield PackWriter(tmp_path / "packs")


@pytest.fixture
def registry(tmp_path: Path) -> Iterator[Registry]:
    """A pack registry served on 127.0.0.1 (tests/registry_server.py), stopped at the end."""
    served = Registry(tmp_path / "registry")
    yield served
    served.stop()
