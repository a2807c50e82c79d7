"""Static checks of schedules, produced assets and rules (dag_factory/validation/schedules.py)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from tests.unit.conftest import PackWriter

BODY = "tasks:\n  - name: a\n    action: core.noop\n"
TARGET = """ref: p.deploy
parameters:
  version: {type: string, required: true}
  env: {type: string, enum: [staging, prod], default: prod}
  day: {type: string, format: date}
tasks:
  - name: a
    action: core.noop
"""


@pytest.mark.parametrize(
    ("schedule", "expected"),
    [
        ('"0 3 * * *"', None),
        ("'@daily'", None),
        ("{assets: [s3://bucket/orders]}", None),
        ('"61 3 * * *"', "2:11: error: cron expression '61 3 * * *' does not parse"),
        ("'@dayly'", "2:11: error: unknown schedule preset '@dayly' (did you mean '@daily'?)"),
        ("{assets: []}", "2:11: error: invalid value for 'schedule"),
        ('{assets: ["a b", x, x]}', "2:21: error: an asset is a URI without spaces"),
    ],
)
def test_a_schedule_is_a_cron_a_preset_or_assets(
    packs: PackWriter, schedule: str, expected: str | None
) -> None:
    packs.pack("p", {"workflows/w.yaml": f"ref: p.w\nschedule: {schedule}\n{BODY}"})
    problems = packs.problems("p/workflows/w.yaml")
    if expected is None:
        assert problems == []
    else:
        assert problems and problems[0].startswith(expected), problems


@pytest.mark.parametrize("schedule", ["'@hourly'", "'@once'", "{assets: [s3://x]}"])
def test_a_scheduled_workflow_needs_a_default_for_every_required_parameter(
    packs: PackWriter, schedule: str
) -> None:
    required = "parameters:\n  who: {type: string, required: true}\n"
    workflow = f"ref: p.w\nschedule: {schedule}\n{required}{BODY}"
    packs.pack("p", {"workflows/w.yaml": workflow})
    (problem,) = packs.problems("p/workflows/w.yaml")
    assert problem.startswith("4:8: error: parameter 'who' is required and has no default"), problem


def test_produced_assets_are_uris_listed_once(packs: PackWriter) -> None:
    packs.pack("p", {"workflows/w.yaml": f"ref: p.w\nproduces: [s3://a, s3://a, 'airflow://x']\n{BODY}"})
    assert packs.problems("p/workflows/w.yaml") == [
        "2:20: error: asset 's3://a' is listed twice",
        "2:28: error: asset 'airflow://x': the scheme 'airflow' is reserved by Airflow",
    ]


def test_a_rule_s_enabled_is_true_or_false(packs: PackWriter) -> None:
    text = rule(CRON, "  ref: p.deploy\n  parameters: {version: '1'}")
    text = text.replace("trigger:", "enabled: 'no'\ntrigger:")
    packs.pack("p", {"workflows/deploy.yaml": TARGET, "rules/r.yaml": text})
    (problem,) = packs.problems("p/rules/r.yaml")
    assert "'enabled' must be true or false, got 'no'" in problem


def rule(trigger: str, action: str) -> str:
    return f"ref: p.r\ntrigger:\n{trigger}\naction:\n{action}\n"


CRON = "  type: core.cron\n  parameters: {expression: '0 2 * * *'}"


@pytest.mark.parametrize(
    ("trigger", "action", "expected"),
    [
        (CRON, "  ref: p.deploy\n  parameters: {version: '1.0'}", []),
        (
            CRON,
            "  ref: p.deploy\n  parameters: {version: \"v{{ trigger.logical_date[:10] }}\", env: staging}",
            [],
        ),
        (CRON, "  ref: p.dploy", ["6:8: error: unknown workflow 'p.dploy' (did you mean 'p.deploy'?)"]),
        (CRON, "  ref: core.noop", ["6:8: error: 'core.noop' is an action: a rule starts a workflow"]),
        (
            CRON,
            "  ref: p.deploy\n  parameters: {version: 1, env: qa, day: 2026-02-30, colour: red}",
            [
                "7:25: error: parameter 'version': 1 is not of type 'string'",
                "7:33: error: parameter 'env': 'qa' is not one of ['staging', 'prod']",
                "7:42: error: parameter 'day': '2026-02-30' is not a 'date'",
                "7:62: error: unknown parameter 'colour' of workflow 'p.deploy'",
            ],
        ),
        (CRON, "  ref: p.deploy", ["6:8: error: missing required parameter 'version' of workflow"]),
        (
            CRON,
            "  ref: p.deploy\n  parameters: {version: '{{ parameters.version }}'}",
            ["7:25: error: a rule's templates may read only 'trigger' (logical_date, assets), not"],
        ),
        (
            CRON,
            "  ref: p.deploy\n  parameters: {version: '{{ trigger.date }}'}",
            ["7:25: error: unknown attribute 'date' of 'trigger'"],
        ),
        (
            "  type: core.cron\n  parameters: {expression: '0 25 * * *'}",
            "  ref: p.deploy\n  parameters: {version: '1'}",
            ["4:28: error: cron expression '0 25 * * *' does not parse"],
        ),
        (
            "  type: core.interval\n  parameters: {seconds: 0}",
            "  ref: p.deploy\n  parameters: {version: '1'}",
            ["4:25: error: 'seconds' must be a whole number of seconds >= 1, got 0"],
        ),
        (
            "  type: core.asset\n  parameters: {uri: s3://x}",
            "  ref: p.deploy\n  parameters: {version: '1'}",
            ["4:15: error: trigger core.asset needs 'uris'", "4:21: error: unknown parameter 'uri'"],
        ),
        (
            "  type: core.webhook\n  parameters: {}",
            "  ref: p.deploy\n  parameters: {version: '1'}",
            ["3:9: error: invalid value for 'trigger.type'"],
        ),
    ],
)
def test_a_rule_is_checked_at_its_lines(
    packs: PackWriter, trigger: str, action: str, expected: list[str]
) -> None:
    packs.pack("p", {"workflows/deploy.yaml": TARGET, "rules/r.yaml": rule(trigger, action)})
    problems = packs.problems("p/rules/r.yaml")
    assert len(problems) == len(expected), problems
    for found, wanted in zip(sorted(problems), sorted(expected), strict=True):
        assert found.startswith(wanted), (found, wanted)


def test_a_rule_of_a_broken_workflow_is_left_out_with_it(packs: PackWriter) -> None:
    broken = TARGET.replace("action: core.noop", "action: core.nothing")
    starts = rule(CRON, "  ref: p.deploy\n  parameters: {version: '1'}")
    packs.pack("p", {"workflows/deploy.yaml": broken, "rules/r.yaml": starts})
    expected = "6:8: error: workflow 'p.deploy' has errors: this rule is left out"
    assert packs.problems("p/rules/r.yaml") == [expected]
