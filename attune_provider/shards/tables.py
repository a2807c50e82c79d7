"""The provider's own tables in Airflow's metadata database (never Airflow's tables).

Created, and migrated when their layout changes, by `ensure_tables` on first use: the
`attune_schema` row records which layout a database has.

- `attune_shard_version`: each published mapping, its version and its shards (JSON list);
- `attune_shard_worker`: each worker's shard and last heartbeat;
- `attune_shard_run`: the shard each DAG run was pinned to, and under which version.
"""

from __future__ import annotations

import threading

from sqlalchemy import (
    Column,
    DateTime,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    inspect,
    select,
    text,
)
from sqlalchemy.engine import Connection

SCHEMA_VERSION = 1
COMPONENT = "shards"

metadata = MetaData()

schema = Table(
    "attune_schema",
    metadata,
    Column("component", String(50), primary_key=True),
    Column("version", Integer, nullable=False),
)
versions = Table(
    "attune_shard_version",
    metadata,
    Column("version", Integer, primary_key=True, autoincrement=False),
    Column("shards", Text, nullable=False),  # JSON list of shard indexes
    Column("published_at", DateTime(timezone=True), nullable=False),
    Column("reason", Text, nullable=False),
)
workers = Table(
    "attune_shard_worker",
    metadata,
    Column("worker", String(250), primary_key=True),
    Column("shard", Integer, nullable=False),
    Column("last_seen", DateTime(timezone=True), nullable=False),
)
runs = Table(
    "attune_shard_run",
    metadata,
    Column("dag_id", String(250), primary_key=True),
    Column("run_id", String(250), primary_key=True),
    Column("version", Integer, nullable=False),
    Column("shard", Integer, nullable=False),
)

_MIGRATIONS: dict[int, str] = {}  # version -> what moving to it does (none yet beyond creation)
_ready: set[str] = set()
_lock = threading.Lock()


def _migrate(connection: Connection) -> None:
    found = connection.execute(select(schema.c.version).where(schema.c.component == COMPONENT)).scalar()
    if found is None:
        connection.execute(schema.insert().values(component=COMPONENT, version=SCHEMA_VERSION))
    elif found > SCHEMA_VERSION:
        raise RuntimeError(
            f"the metadata database holds Attune's shard tables at layout {found}, newer than this "
            f"provider's {SCHEMA_VERSION}: upgrade the provider on this machine"
        )


_LOCK_KEY = 0x41545455  # "ATTU": the advisory lock serialising creation on PostgreSQL


def ensure_tables(connection: Connection) -> None:
    """Create (or migrate) the tables, in `connection`'s transaction; once per process and
    database, cheap afterwards. Several processes starting together on a new database
    (a cluster's heartbeats, schedulers) take turns on PostgreSQL (a transaction-scoped
    advisory lock), so none fails on another's `CREATE TABLE`."""
    key = str(connection.engine.url)
    if key in _ready:
        return
    with _lock:
        if key in _ready:
            return
        if connection.dialect.name == "postgresql":
            connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _LOCK_KEY})
        names = set(inspect(connection).get_table_names())
        if not {t.name for t in metadata.sorted_tables} <= names:
            metadata.create_all(connection, checkfirst=True)
        _migrate(connection)
        _ready.add(key)


def forget_ready() -> None:
    """Check the tables again on next use (their creation may have been rolled back)."""
    with _lock:
        _ready.clear()
