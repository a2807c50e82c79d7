"""Static checks of actions backed by an Airflow operator (`runner_type: airflow`).

Only what the YAML says: `operator` is there for that runner type and only for it, and
it is a dotted path `module.Class` of Python identifiers. Whether the class imports, is a
`BaseOperator` and accepts the declared parameters is checked when the DAG is compiled
(runners/airflow_operator.py), since that needs Airflow. Nothing here imports Airflow.
"""

from __future__ import annotations

import keyword

from attune_provider.dag_factory.validation.workflow import error
from attune_provider.language.catalog import ActionEntry
from attune_provider.language.source import Location, Problem, key_location

AIRFLOW_RUNNER = "airflow"
EXAMPLE_OPERATOR = "airflow.providers.standard.operators.bash.BashOperator"
SET_BY_ATTUNE = ("task_id",)  # operator arguments Attune sets itself, never a parameter


def is_dotted_path(path: str) -> bool:
    """`module.Class`: at least two parts, each a Python identifier that is not a keyword."""
    parts = path.split(".")
    return len(parts) >= 2 and all(part.isidentifier() and not keyword.iskeyword(part) for part in parts)


def check_operator(entry: ActionEntry) -> list[Problem]:
    """`operator` is required for runner_type airflow, refused for any other, and dotted."""
    action = entry.action
    if action.runner_type != AIRFLOW_RUNNER:
        if action.operator is None:
            return []
        message = (
            f"'operator' is only for runner_type '{AIRFLOW_RUNNER}' (this action's runner_type is "
            f"'{action.runner_type}')"
        )
        return [error(action.key_loc("operator"), message)]
    if action.operator is None:
        message = (
            f"runner_type '{AIRFLOW_RUNNER}' needs an 'operator': the dotted path of an Airflow "
            f"operator class, e.g. {EXAMPLE_OPERATOR}"
        )
        return [error(action.loc("runner_type"), message)]
    problems: list[Problem] = []
    if not is_dotted_path(action.operator):
        message = (
            f"operator {action.operator!r} is not a dotted path 'module.Class' of Python identifiers "
            f"(e.g. {EXAMPLE_OPERATOR})"
        )
        problems.append(error(action.loc("operator"), message))
    for name in SET_BY_ATTUNE:
        if name in action.parameters:
            message = f"parameter '{name}' cannot be declared: Attune sets the operator's {name} itself"
            problems.append(error(_parameter_key(entry, name), message))
    return problems


def _parameter_key(entry: ActionEntry, name: str) -> Location:
    """Where the key of the action's parameter `name` is written."""
    action = entry.action
    parameters = action.source.get("parameters") if isinstance(action.source, dict) else None
    return key_location(parameters, name, action.loc("parameters", name))
