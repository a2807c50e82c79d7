"""Where the provider's settings come from (docs/configuration.md).

Each setting is looked up in order: an explicit value (the command line), an environment
variable, the Airflow option in the `[attune]` section, then a default. The Airflow
option is read through Airflow's `conf` when Airflow is already imported (the DAG processor,
workers, the scheduler), else from its `AIRFLOW__ATTUNE__<KEY>` variable or straight from
`airflow.cfg`: validation never pays the seconds of importing Airflow.
"""

from __future__ import annotations

import configparser
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from attune_provider.language.source import DEFAULT_MAX_FILE_BYTES
from attune_provider.language.templates.limits import (
    DEFAULT_MAX_RESULT_BYTES,
    DEFAULT_TIMEOUT,
    TemplateLimits,
)

SECTION = "attune"
PACKS_PATH_ENV = "ATTUNE_PACKS_PATH"
DEFAULT_PACKS_DIR = Path("packs")
DEFAULT_MAX_DEPTH = 5

ORIGIN_CLI = "cli"
ORIGIN_ENV = "env"
ORIGIN_AIRFLOW = "airflow"
ORIGIN_DEFAULT = "default"


def airflow_option(key: str, section: str = SECTION) -> str | None:
    """`[section] key` as Airflow reads it, else None.

    Inside Airflow (its configuration is imported already: the DAG processor, workers,
    the scheduler, `attune-airflow run`) through Airflow's own `conf`, so every form it
    supports for the option works as for Airflow's own options. Outside it
    (`attune-airflow validate`, which never pays for importing Airflow) the environment
    variable, else airflow.cfg read directly.
    """
    if "airflow.configuration" in sys.modules:
        from airflow.configuration import conf

        found = conf.get(section, key, fallback=None)
        return None if found is None else str(found)
    value = os.environ.get(f"AIRFLOW__{section.upper()}__{key.upper()}")
    if value is not None:
        return value
    return _from_config_file(section, key)


def airflow_home() -> Path:
    """`AIRFLOW_HOME`, else `~/airflow`, as Airflow finds it."""
    return Path(os.environ.get("AIRFLOW_HOME") or "~/airflow").expanduser()


def _config_file() -> Path:
    """Airflow's config file, found as Airflow finds it (AIRFLOW_CONFIG, AIRFLOW_HOME)."""
    if os.environ.get("AIRFLOW_CONFIG"):
        return Path(os.environ["AIRFLOW_CONFIG"]).expanduser()
    return airflow_home() / "airflow.cfg"


def _from_config_file(section: str, key: str) -> str | None:
    """Read one option from airflow.cfg without importing Airflow (seconds saved)."""
    parser = configparser.ConfigParser(interpolation=None)
    try:
        parser.read(_config_file(), encoding="utf-8")
    except (OSError, configparser.Error):
        return None
    return parser.get(section, key, fallback=None)


def _split(value: str) -> list[Path]:
    return [Path(part) for part in value.split(os.pathsep) if part.strip()]


def resolve_packs_paths(cli_values: Sequence[str] | None = None) -> tuple[list[Path], str]:
    """The packs directories and where they came from (one of the ORIGIN_* names)."""
    if cli_values:
        return [Path(value) for value in cli_values], ORIGIN_CLI
    from_env = os.environ.get(PACKS_PATH_ENV)
    if from_env and from_env.strip():
        return _split(from_env), ORIGIN_ENV
    from_airflow = airflow_option("packs_path")
    if from_airflow and from_airflow.strip():
        return _split(from_airflow), ORIGIN_AIRFLOW
    return [DEFAULT_PACKS_DIR], ORIGIN_DEFAULT


def packs_paths(cli_values: Sequence[str] | None = None) -> list[Path]:
    """`--packs` values, else ATTUNE_PACKS_PATH, else `[attune] packs_path`, else ./packs."""
    return resolve_packs_paths(cli_values)[0]


def _int_option(key: str, default: int, minimum: int) -> int:
    raw = airflow_option(key)
    if raw is None or not raw.strip():
        return default
    try:
        value = int(raw.strip())
    except ValueError:
        raise ValueError(f"[{SECTION}] {key} must be an integer, got {raw!r}")
    if value < minimum:
        raise ValueError(f"[{SECTION}] {key} must be at least {minimum}, got {value}")
    return value


def max_file_bytes() -> int:
    """`[attune] max_file_bytes`: the largest pack file read (default 1 MiB)."""
    return _int_option("max_file_bytes", DEFAULT_MAX_FILE_BYTES, 1)


def max_depth() -> int:
    """`[attune] max_subworkflow_depth`: how deep subworkflows may nest (default 5)."""
    return _int_option("max_subworkflow_depth", DEFAULT_MAX_DEPTH, 0)


def _text_option(key: str) -> str | None:
    raw = airflow_option(key)
    return raw.strip() if raw is not None and raw.strip() else None


def confidential_queue() -> str | None:
    """`[attune] confidential_queue`: the queue only isolated workers serve (unset: none)."""
    return _text_option("confidential_queue")


def confidential_executor() -> str | None:
    """`[attune] confidential_executor`: the executor of confidential tasks where several
    executors are configured (unset: none)."""
    return _text_option("confidential_executor")


DEFAULT_SHARD_TIMEOUT = 60


def shards() -> int | None:
    """`[attune] shards`: how many shard queues Attune tasks are spread over (None: off)."""
    raw = airflow_option("shards")
    if raw is None or not raw.strip():
        return None
    return _int_option("shards", 0, 1)


def shard_timeout() -> int:
    """`[attune] shard_timeout`: seconds without a heartbeat after which a shard is not live."""
    return _int_option("shard_timeout", DEFAULT_SHARD_TIMEOUT, 1)


# -- limits (docs/validation.md, "Limits") ---------------------------------------------

DEFAULT_MAX_TASKS = 500
DEFAULT_MAX_ITEMS = 1024


def max_tasks() -> int:
    """`[attune] max_tasks`: the most tasks one workflow may declare (default 500)."""
    return _int_option("max_tasks", DEFAULT_MAX_TASKS, 1)


def max_items() -> int:
    """`[attune] max_items`: the most items a with_items task may render at run time
    (default 1024)."""
    return _int_option("max_items", DEFAULT_MAX_ITEMS, 1)


def max_template_result_bytes() -> int:
    """`[attune] max_template_result_bytes`: the largest string, number or sequence one
    template operation may make (default 1 MiB)."""
    return _int_option("max_template_result_bytes", DEFAULT_MAX_RESULT_BYTES, 1024)


def template_timeout() -> float:
    """`[attune] template_timeout`: seconds one template may run before it fails (default 5)."""
    raw = airflow_option("template_timeout")
    if raw is None or not raw.strip():
        return DEFAULT_TIMEOUT
    try:
        value = float(raw.strip())
    except ValueError:
        raise ValueError(f"[{SECTION}] template_timeout must be a number of seconds, got {raw!r}")
    if not 0 < value <= 3600:
        raise ValueError(
            f"[{SECTION}] template_timeout must be more than 0 and at most 3600 seconds, got {value}"
        )
    return value


def template_limits() -> TemplateLimits:
    """`[attune] max_template_result_bytes` and `[attune] template_timeout`, read each time
    templates render (the language reads no configuration of its own: the layers that
    render give it this with `set_limits_source`)."""
    return TemplateLimits(max_template_result_bytes(), template_timeout())
