"""Parsed pack files and validation reports, cached on disk and keyed by content hash.

Airflow re-parses the DAG file every `min_file_process_interval` seconds, in a fresh
process, and again for every task it runs; the packs rarely change in between. Two
kinds of entries make that cheap (docs/performance.md has the figures):

- one per pack file: what the loader made of it (the pydantic model, or the config
  schema, and the problems of that file). It is found by the file's path (with its kind,
  display name and the size limit), and used only when the file's size and SHA-256 are
  the ones recorded; the hash is of the very bytes then parsed, so an edit can never
  leave a stale model behind (a change of mtime alone, e.g. `touch`, keeps the entry);
- one per validation scope (the whole packs path, or the closure of one workflow at
  task time): the validator's findings, used only when the fingerprint of everything
  validation reads matches (every file's hash, the entry points, the settings).

Entries live below `ATTUNE_CACHE_DIR`, else `[attune] cache_dir`, else
`$AIRFLOW_HOME/attune_cache`; `off` turns caching off. A sub-directory per code version
(the sources of `language` and `dag_factory` and the versions of the libraries whose output is stored)
keeps an upgrade from reading old entries. Writes go to a temporary file renamed into
place (`os.replace`), so DAG processors writing at once never expose a partial entry;
an unreadable entry is a miss.

Entries are pickles, and reading a pickle can run any code: whoever can write an entry
could run code in the DAG processor and the workers. So the cache is used only when
nobody but the user Airflow runs as can (docs/design.md, "The parse cache trusts only its
owner"): the cache directory, and every directory below it, must be owned by that user
and not writable by group or others (missing ones are created with mode 0700, missing
parents of the cache directory too), and no parent of it may be writable by every user
without the sticky bit (someone could swap the directory). Otherwise a warning is logged
once and the process parses without the cache. Each entry read must be a file owned by
that user and not writable by group or others too, else it is a miss.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import logging
import os
import pickle
import stat
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, NamedTuple

import jinja2
import pydantic
import yaml

from attune_provider.language.models import DeferredSource, Node, nodes
from attune_provider.language.source import LoadedYaml, Problem, load_yaml_text
from attune_provider.settings import airflow_home, airflow_option

log = logging.getLogger(__name__)

CACHE_DIR_ENV = "ATTUNE_CACHE_DIR"
DEFAULT_DIR_NAME = "attune_cache"
DISABLED = ("off", "none", "false", "0")
FORMAT = 1
_PROTOCOL = pickle.HIGHEST_PROTOCOL
PARSING_CODE = ("language", "dag_factory")  # the packages whose code makes what is stored


def configured_dir() -> Path | None:
    """The cache directory from the environment and settings, or None when turned off."""
    raw = os.environ.get(CACHE_DIR_ENV)
    if raw is None or not raw.strip():
        raw = airflow_option("cache_dir")
    if raw is not None and raw.strip():
        if raw.strip().lower() in DISABLED:
            return None
        return Path(raw.strip()).expanduser()
    return airflow_home() / DEFAULT_DIR_NAME


def code_version() -> str:
    """Changes whenever what is stored could: this package's parsing code or its libraries."""
    package = Path(__file__).resolve().parent.parent
    digest = hashlib.sha256(f"{FORMAT} {sys.version} {pydantic.VERSION} {yaml.__version__}".encode())
    digest.update(f" {jinja2.__version__} {_jsonschema_version()}".encode())
    for module in sorted(m for layer in PARSING_CODE for m in (package / layer).rglob("*.py")):
        stat = module.stat()
        digest.update(f" {module.relative_to(package)}:{stat.st_size}:{stat.st_mtime_ns}".encode())
    return digest.hexdigest()[:16]


def _jsonschema_version() -> str:
    """Where jsonschema is installed and when (its messages end up in reports): cheap to get,
    unlike `importlib.metadata.version`, which scans every installed distribution."""
    try:
        spec = importlib.util.find_spec("jsonschema")
        origin = spec.origin if spec is not None else None
        if origin is None:
            return "?"
        stat = os.stat(origin)
        return f"{origin}:{stat.st_size}:{stat.st_mtime_ns}"
    except Exception:  # noqa: BLE001 - unknown is a version too
        return "?"


_WARNED: set[str] = set()  # the untrusted paths warned about in this process


def _warn_once(path: Path, reason: str) -> None:
    if str(path) in _WARNED:
        return
    _WARNED.add(str(path))
    log.warning(
        "Attune parse cache not used: %s %s. Its entries are pickles, which run code when read:"
        " the cache directory must belong to the user Airflow runs as (uid %d) and be writable"
        " by it alone. Parsing without the cache (slower, never wrong).",
        path,
        reason,
        os.geteuid(),
    )


_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)


def _untrusted(info: os.stat_result, entry: bool = False) -> str | None:
    """Why a directory, or an `entry` (a file this cache wrote: one link to it), could hold
    what someone else wrote, else None."""
    if info.st_uid != os.geteuid():
        return f"belongs to uid {info.st_uid}"
    if info.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        who = "others" if info.st_mode & stat.S_IWOTH else "group"
        return f"is writable by {who} (mode {info.st_mode & 0o7777:o})"
    if entry and (not stat.S_ISREG(info.st_mode) or info.st_nlink != 1):
        return "is not a file this cache wrote (a special file, or one with several links)"
    return None


def _open_parent(directory: Path) -> str | None:
    """Why a parent of the cache directory would let another user swap what is below it:
    writable by every user without the sticky bit (as /tmp has). Else None. The parents
    of where it really is count too, when it is (or is below) a symbolic link."""
    real = Path(os.path.realpath(directory))
    parents = [*reversed(directory.parents), *(reversed(real.parents) if real != directory else [])]
    for parent in parents:
        try:
            info = os.stat(parent)
        except FileNotFoundError:
            return None  # created below, mode 0700
        if info.st_mode & stat.S_IWOTH and not info.st_mode & stat.S_ISVTX:
            return f"is below {parent}, which every user may write (mode {info.st_mode & 0o7777:o})"
    return None


def private_dir(directory: Path) -> str | None:
    """Create `directory` (and its missing parents) with mode 0700; None when it, and each
    parent created, belongs to this user alone, else why not."""
    missing: list[Path] = []
    current = directory
    while not os.path.lexists(current) and current != current.parent:
        missing.append(current)
        current = current.parent
    for path in reversed(missing):
        with contextlib.suppress(FileExistsError):  # another process made it meanwhile: checked below
            os.mkdir(path, 0o700)
    for path in [*reversed(missing)] or [directory]:  # `directory` comes last
        info = os.stat(path)
        if not stat.S_ISDIR(info.st_mode):
            return "is not a directory"
        why = _untrusted(info)
        if why is not None:
            return why if path == directory else f"is below {path}, which {why}"
    return None


def _name(*parts: object) -> str:
    return hashlib.sha256("\0".join(map(str, parts)).encode()).hexdigest()[:40]


class Parsed(NamedTuple):
    """What the loader made of one file: its value (a model, a schema or None) and problems."""

    value: Any
    problems: list[Problem]
    digest: str  # SHA-256 of the bytes parsed ("" when the file could not be read)


_DEFERRED = "attune-model/deferred-sources"


def _to_entry(value: Any) -> Any:
    """What a file entry stores of a loaded value: a model as two pickles, the model
    without its YAML positions and the positions (a `DeferredSource` each when read back)."""
    if not isinstance(value, Node):
        return value
    models = list(nodes(value))
    sources = [model._source for model in models]
    for model in models:
        model._source = None
    try:
        return (_DEFERRED, pickle.dumps(value, _PROTOCOL), pickle.dumps(sources, _PROTOCOL))
    finally:
        for model, source in zip(models, sources, strict=True):
            model._source = source


def _from_entry(stored: Any) -> Any:
    """The value of a file entry: a model with its positions read only when first asked for."""
    if not (isinstance(stored, tuple) and len(stored) == 3 and stored[0] == _DEFERRED):
        return stored
    model = pickle.loads(stored[1])
    blob: bytes = stored[2]
    loaded: list[list[Any]] = []

    def sources() -> list[Any]:
        if not loaded:
            loaded.append(pickle.loads(blob))
        return loaded[0]

    for index, node in enumerate(nodes(model)):
        node._source = DeferredSource(sources, index)
    return model


class FileCache:
    """Entries below `root/<code version>`; every failure to read or write is a miss."""

    SUBDIRS = ("files", "bundles", "reports")

    def __init__(self, root: Path, version: str | None = None) -> None:
        self.root = Path(os.path.abspath(root)) / f"v{FORMAT}-{version or code_version()}"
        self.hits = 0
        self.misses = 0
        self._dirs: set[Path] = set()  # the directories found private to this user
        self._bundle: dict[str, Any] | None = None  # file entries read at the start of a batch
        self._used: dict[str, Any] = {}  # the entries of this batch's files, for the next one
        self.trusted = self._check(root)

    def _check(self, base: Path) -> bool:
        """Whether only this user can write the cache (else warned once: then every read
        is a miss and nothing is written). Creates what is missing, mode 0700."""
        base = Path(os.path.abspath(base))
        try:
            why = _open_parent(base)
            if why is not None:
                _warn_once(base, why)
                return False
            for directory in (base, self.root, *(self.root / sub for sub in self.SUBDIRS)):
                why = private_dir(directory)
                if why is not None:
                    _warn_once(directory, why)
                    return False
                self._dirs.add(directory)
        except OSError:  # cannot be created (a read-only disk): only costs speed
            log.debug("Attune cache directory %s cannot be used", base, exc_info=True)
            return False
        return True

    @classmethod
    def open(cls) -> FileCache | None:
        """The configured cache, or None when it is turned off or cannot be used (nor
        trusted: docs/design.md)."""
        try:
            root = configured_dir()
            if root is None:
                return None
            cache = cls(root)
            return cache if cache.trusted else None
        except Exception:  # noqa: BLE001 - no cache is slower, never wrong
            log.warning("Attune cache disabled", exc_info=True)
            return None

    # -- low level -----------------------------------------------------------------

    def _read(self, path: Path) -> Any:
        """The entry at `path`, or None: missing, unreadable, or possibly written by someone
        else (only a file of this user that no one else may write is unpickled)."""
        if not self.trusted:
            return None
        try:
            # never through a symbolic link: an entry is a file this cache wrote itself
            with os.fdopen(os.open(path, os.O_RDONLY | _NOFOLLOW), "rb") as handle:
                why = _untrusted(os.fstat(handle.fileno()), entry=True)
                if why is not None:
                    _warn_once(path, why)
                    return None
                return pickle.load(handle)
        except FileNotFoundError:
            return None
        except Exception:  # noqa: BLE001 - a corrupt or foreign entry is a miss
            log.debug("unreadable cache entry %s", path, exc_info=True)
            return None

    def _write(self, path: Path, value: Any) -> None:
        """Atomically: a temporary file in the same directory, renamed over the entry."""
        if not self.trusted:
            return
        try:
            directory = path.parent
            if directory not in self._dirs or not directory.is_dir():  # deleted meanwhile
                why = private_dir(directory)
                if why is not None:
                    _warn_once(directory, why)
                    return
                self._dirs.add(directory)
            fd, temp = tempfile.mkstemp(prefix=".tmp-", dir=directory)
            try:
                with os.fdopen(fd, "wb") as handle:
                    pickle.dump(value, handle, protocol=_PROTOCOL)
                os.replace(temp, path)
            except BaseException:
                with contextlib.suppress(OSError):
                    os.unlink(temp)
                raise
        except Exception:  # noqa: BLE001 - a read-only or full disk only costs speed
            log.debug("cannot write cache entry %s", path, exc_info=True)

    # -- pack files ----------------------------------------------------------------

    @contextlib.contextmanager
    def batch(self, scope: str) -> Iterator[None]:
        """Within it, file entries are read from, and written back to, one bundle for
        `scope` (the whole packs path, or one workflow's closure) instead of one file per
        pack file: creating hundreds of small files was most of what the cache cost a cold
        load (docs/performance.md). Each entry is still checked against its file's
        content; the bundle holds exactly the files of the last load of that scope."""
        path = self.root / "bundles" / f"{_name(scope, os.getcwd())}.pickle"
        stored = self._read(path)
        self._bundle, self._used = (stored if isinstance(stored, dict) else {}), {}
        try:
            yield
            bundle, used = self._bundle, self._used
            if used.keys() != bundle.keys() or any(used[k] is not bundle[k] for k in used):
                self._write(path, used)
        except BaseException:
            # interrupted (Airflow's import timeout raises in the middle of a load): keep what
            # was parsed, so that the next parse goes further instead of starting cold again
            if any(self._bundle.get(k) is not v for k, v in self._used.items()):
                self._write(path, {**self._bundle, **self._used})
            raise
        finally:
            self._bundle, self._used = None, {}

    def parsed(
        self,
        path: Path,
        display: str,
        kind: str,
        max_bytes: int,
        parse: Callable[[LoadedYaml], tuple[Any, list[Problem]]],
    ) -> Parsed | None:
        """The cached result of `parse` for this file, or a fresh one (then stored).

        None when the file cannot be read here or is over the limit: the caller's ordinary
        path reports that, exactly as without a cache.
        """
        try:
            size = os.stat(path).st_size
            if size > max_bytes:
                return None
            with open(path, "rb") as handle:
                raw = handle.read()
        except OSError:
            return None
        digest = hashlib.sha256(raw).hexdigest()
        name = _name(kind, os.path.abspath(path), display, max_bytes)
        entry_path = self.root / "files" / f"{name}.pickle"
        entry = self._read(entry_path) if self._bundle is None else self._bundle.get(name)
        if isinstance(entry, tuple) and len(entry) == 3 and entry[0] == (len(raw), digest):
            self.hits += 1
            self._used[name] = entry
            return Parsed(_from_entry(entry[1]), entry[2], digest)
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            return None
        self.misses += 1
        value, problems = parse(load_yaml_text(text, display, max_bytes))
        entry = ((len(raw), digest), _to_entry(value), problems)
        self._used[name] = entry
        if self._bundle is None:
            self._write(entry_path, entry)
        return Parsed(value, problems, digest)

    # -- validation reports ----------------------------------------------------------

    def report(self, scope: str, fingerprint: str) -> Any:
        """The report stored for `scope` when it was made from the same inputs, else None."""
        entry = self._read(self._report_path(scope))
        if isinstance(entry, tuple) and len(entry) == 2 and entry[0] == fingerprint:
            self.hits += 1
            return entry[1]
        self.misses += 1
        return None

    def store_report(self, scope: str, fingerprint: str, report: Any) -> None:
        self._write(self._report_path(scope), (fingerprint, report))

    def _report_path(self, scope: str) -> Path:
        return self.root / "reports" / f"{_name(scope, os.getcwd())}.pickle"
