"""`attune-airflow shards heartbeat` refuses what would hammer the database or watch nothing."""

from __future__ import annotations

import pytest

from attune_provider.cli import main

INTERVAL = "--interval must be between 0.5 and shard_timeout / 2"


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["--shard", "5"], 2, "--shard must be between 0 and 2"),
        (["--shard", "0", "--pid", "0"], 2, "--pid must be a process id (> 0), got 0"),
        (["--shard", "0", "--interval", "-2"], 2, INTERVAL),
        (["--shard", "0", "--interval", "40"], 2, f"{INTERVAL} (30 s"),
        (["--shard", "0", "--pid", "999999999"], 1, "process 999999999 does not exist"),
    ],
)
def test_a_heartbeat_refuses_bad_arguments(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    args: list[str],
    code: int,
    message: str,
) -> None:
    monkeypatch.setenv("AIRFLOW__ATTUNE__SHARDS", "3")
    monkeypatch.setenv("AIRFLOW__ATTUNE__SHARD_TIMEOUT", "60")
    assert main(["shards", "heartbeat", *args]) == code
    assert message in capsys.readouterr().err
