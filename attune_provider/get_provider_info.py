"""Provider metadata for Airflow's `apache_airflow_provider` entry point (hand-written)."""

from __future__ import annotations

from typing import Any

from attune_provider import __version__


def get_provider_info() -> dict[str, Any]:
    return {
        "package-name": "airflow-provider-attune",
        "name": "Attune",
        "description": "Compile declarative Attune workflow packs (YAML) into Apache Airflow DAGs.",
        "versions": [__version__],
        "config": {
            "attune": {
                "description": "Attune for Airflow: where packs are and how they are loaded.",
                "options": {
                    "packs_path": {
                        "description": "':'-separated directories holding packs (else ./packs).",
                        "version_added": "0.1.0",
                        "type": "string",
                        "example": "/opt/airflow/packs",
                        "default": None,
                    },
                    "max_file_bytes": {
                        "description": "Largest pack file accepted, in bytes.",
                        "version_added": "0.1.0",
                        "type": "integer",
                        "example": "1048576",
                        "default": "1048576",
                    },
                    "cache_dir": {
                        "description": "Where parsed packs are cached ('off' disables the cache).",
                        "version_added": "0.1.0",
                        "type": "string",
                        "example": "/opt/airflow/attune_cache",
                        "default": None,
                    },
                    "max_subworkflow_depth": {
                        "description": "How deeply subworkflows may nest.",
                        "version_added": "0.1.0",
                        "type": "integer",
                        "example": "5",
                        "default": "5",
                    },
                    "max_tasks": {
                        "description": "Most tasks one workflow may have, its subworkflows' included.",
                        "version_added": "0.4.0",
                        "type": "integer",
                        "example": "500",
                        "default": "500",
                    },
                    "max_items": {
                        "description": "Most items a with_items task may have (checked at run time).",
                        "version_added": "0.4.0",
                        "type": "integer",
                        "example": "1024",
                        "default": "1024",
                    },
                    "max_template_result_bytes": {
                        "description": "Largest value one template operation may make, in bytes.",
                        "version_added": "0.4.0",
                        "type": "integer",
                        "example": "1048576",
                        "default": "1048576",
                    },
                    "template_timeout": {
                        "description": "Seconds one template may run before it fails.",
                        "version_added": "0.4.0",
                        "type": "float",
                        "example": "5",
                        "default": "5",
                    },
                    "sources": {
                        "description": "Workflow sources besides the packs path: a JSON list of at most "
                        "five {name, kind: dir|http, path|url, conn_id, refresh_seconds} (docs/sources.md).",
                        "version_added": "0.2.0",
                        "type": "string",
                        "example": '[{"name": "central", "kind": "http", "url": "https://reg.example/attune"}]',
                        "default": None,
                    },
                    "sources_dir": {
                        "description": "Where the http sources' last known good packs are kept "
                        "(else $AIRFLOW_HOME/attune_sources).",
                        "version_added": "0.2.0",
                        "type": "string",
                        "example": "/opt/airflow/attune_sources",
                        "default": None,
                    },
                    "confidential_queue": {
                        "description": "The queue every task of a confidential workflow runs on "
                        "(docs/confidential.md); unset, with no confidential_executor: not loaded.",
                        "version_added": "0.2.0",
                        "type": "string",
                        "example": "attune-confidential",
                        "default": None,
                    },
                    "confidential_executor": {
                        "description": "The executor of confidential tasks where several are configured.",
                        "version_added": "0.2.0",
                        "type": "string",
                        "example": "CeleryExecutor",
                        "default": None,
                    },
                    "shards": {
                        "description": "How many shard queues (attune-shard-<i>) Attune tasks are spread "
                        "over (docs/shards.md); unset: off. Restart the scheduler after changing it.",
                        "version_added": "0.3.0",
                        "type": "integer",
                        "example": "3",
                        "default": None,
                    },
                    "shard_timeout": {
                        "description": "Seconds without a worker's heartbeat after which a shard "
                        "is not live.",
                        "version_added": "0.3.0",
                        "type": "integer",
                        "example": "60",
                        "default": "60",
                    },
                    "api_conn_id": {
                        "description": "The connection to Airflow's REST API through which a source's "
                        "change of status pauses or unpauses existing DAGs.",
                        "version_added": "0.2.0",
                        "type": "string",
                        "example": "attune_airflow_api",
                        "default": "attune_airflow_api",
                    },
                },
            }
        },
    }
