"""Actions backed by an Airflow operator (docs/runners.md), before any run: the
static checks of `operator` at their lines, and the compile-time checks of the class (it
imports, is a BaseOperator, takes every declared parameter) that leave out only the
workflows calling a broken action."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from airflow.sdk import BaseOperator

from attune_provider.dag_factory.factory import load_packs
from attune_provider.runners import airflow_operator
from attune_provider.runners.airflow_operator import accepted_arguments, load_operator

if TYPE_CHECKING:
    from tests.unit.conftest import PackWriter

BASH = "airflow.providers.standard.operators.bash.BashOperator"
HERE = __name__  # these operator classes are importable by their dotted path


class WithOptions(BaseOperator):
    """Named keyword parameters of its own, the rest passed on to BaseOperator."""

    def __init__(self, *, colour: str = "red", size: int = 1, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.colour, self.size = colour, size


class Inheriting(WithOptions):
    """No `__init__` of its own: WithOptions' (and BaseOperator's) arguments."""


class Closed(WithOptions):
    """No `**kwargs`: nothing reaches the classes after it, not even task_id."""

    def __init__(self, shade: str = "dark") -> None:
        super().__init__(task_id="closed")
        self.shade = shade


class Passing(WithOptions):
    """Positional `*args` and `**kwargs`: its bases' keyword arguments still count."""

    def __init__(self, *args: Any, weight: float = 0, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.weight = weight


class NotAnOperator:
    def __init__(self, colour: str = "red") -> None:
        self.colour = colour


def action(operator: str | None, parameters: str, name: str = "a") -> str:
    text = f"name: {name}\nrunner_type: airflow\n"
    if operator is not None:
        text += f"operator: {operator}\n"
    return text + f"parameters:\n{parameters}"


def workflow(ref: str, calls: str) -> str:
    return f"ref: {ref}\ntasks:\n  - name: only\n    action: {calls}\n"


# --- static validation ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "text, where, message",
    [
        (
            "name: a\nrunner_type: airflow\nparameters: {}\n",
            "2:14",
            "runner_type 'airflow' needs an 'operator': the dotted path of an Airflow operator class, "
            f"e.g. {BASH}",
        ),
        (
            "name: a\nrunner_type: echo\noperator: " + BASH + "\n",
            "3:1",
            "'operator' is only for runner_type 'airflow' (this action's runner_type is 'echo')",
        ),
        (
            "name: a\nrunner_type: airflow\noperator: BashOperator\n",
            "3:11",
            "operator 'BashOperator' is not a dotted path 'module.Class' of Python identifiers",
        ),
        ("name: a\nrunner_type: airflow\noperator: airflow..Bash\n", "3:11", "is not a dotted path"),
        ("name: a\nrunner_type: airflow\noperator: my-pack.ops.Op\n", "3:11", "is not a dotted path"),
        ("name: a\nrunner_type: airflow\noperator: ops.class.Op\n", "3:11", "is not a dotted path"),
        ("name: a\nrunner_type: airflow\noperator: 42\n", "3:11", "invalid value for 'operator'"),
        (
            f"name: a\nrunner_type: airflow\noperator: {BASH}\n"
            "parameters:\n  bash_command: {}\n  task_id: {}\n",
            "6:3",
            "parameter 'task_id' cannot be declared: Attune sets the operator's task_id itself",
        ),
    ],
)
def test_operator_is_checked_at_its_line(packs: PackWriter, text: str, where: str, message: str) -> None:
    packs.pack("p", {"actions/a.yaml": text, "workflows/w.yaml": workflow("p.w", "p.a")})
    (problem,) = packs.problems("p/actions/a.yaml")
    assert problem.startswith(f"{where}: error: ") and message in problem, problem
    report = packs.validate()
    assert "p.w" in report.invalid_workflows  # it calls a broken action


def test_a_valid_airflow_action_has_no_static_problem(packs: PackWriter) -> None:
    text = action(BASH, "  bash_command: {type: string, required: true}\n  env: {type: object}\n")
    calling = workflow("p.w", "p.a") + "    input: {bash_command: date}\n"
    packs.pack("p", {"actions/a.yaml": text, "workflows/w.yaml": calling})
    assert packs.problems() == []


# --- the constructor's arguments -------------------------------------------------------------


def test_accepted_arguments_walk_the_mro_up_to_base_operator() -> None:
    base = accepted_arguments(BaseOperator)
    assert {"task_id", "retries", "pool", "owner", "do_xcom_push"} <= base
    assert accepted_arguments(WithOptions) == base | {"colour", "size"}
    assert accepted_arguments(Inheriting) == base | {"colour", "size"}
    assert accepted_arguments(Closed) == {"shade"}
    assert accepted_arguments(Passing) == base | {"colour", "size", "weight"}
    sql = load_operator("airflow.providers.common.sql.operators.sql.SQLExecuteQueryOperator").accepted
    assert {"sql", "conn_id", "hook_params", "retry_on_failure", "retries"} <= sql  # BaseSQLOperator's too


def test_the_import_is_cached_per_operator_path(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(airflow_operator, "_LOADED", {})
    imported: list[str] = []
    real = airflow_operator.importlib.import_module

    def counting(name: str) -> Any:
        imported.append(name)
        return real(name)

    monkeypatch.setattr(airflow_operator.importlib, "import_module", counting)
    assert load_operator(f"{HERE}.WithOptions") is load_operator(f"{HERE}.WithOptions")
    for _ in range(2):
        with pytest.raises(airflow_operator.OperatorProblem):
            load_operator("attune_no_such_module.Op")
    assert imported == [HERE, "attune_no_such_module"]


# --- compile time: one broken action leaves out only the workflows calling it ----------------


@pytest.mark.parametrize(
    "operator, parameters, problem",
    [
        (
            "attune_no_such_module.ops.Op",
            "  x: {}\n",
            "operator 'attune_no_such_module.ops.Op' cannot be imported: ModuleNotFoundError: "
            "No module named 'attune_no_such_module'",
        ),
        (
            "airflow.providers.standard.operators.bash.BashOperatr",
            "  bash_command: {}\n",
            "operator 'airflow.providers.standard.operators.bash.BashOperatr' cannot be imported: module "
            "'airflow.providers.standard.operators.bash' has no attribute 'BashOperatr'",
        ),
        (
            f"{HERE}.NotAnOperator",
            "  colour: {}\n",
            f"operator '{HERE}.NotAnOperator' is not an Airflow operator: a class {HERE}.NotAnOperator, "
            "not a subclass of BaseOperator",
        ),
        (
            "collections.abc",
            "  x: {}\n",
            "operator 'collections.abc' is not an Airflow operator: a module, not a subclass of BaseOperator",
        ),
        (
            BASH,
            "  bash_command: {}\n  bash_cmd: {}\n",
            f"operator '{BASH}' does not accept the parameter 'bash_cmd': neither its constructor nor "
            "those of its base classes up to BaseOperator take such an argument",
        ),
        (
            f"{HERE}.Closed",
            "  shade: {}\n  colour: {}\n  retries: {}\n",
            f"operator '{HERE}.Closed' does not accept the parameters 'colour', 'retries'",
        ),
    ],
)
def test_a_broken_operator_leaves_out_only_the_workflows_that_call_it(
    packs: PackWriter, operator: str, parameters: str, problem: str
) -> None:
    good = action(BASH, "  bash_command: {type: string}\n  cwd: {}\n  pool: {}\n", name="good")
    packs.pack(
        "p",
        {
            "actions/a.yaml": action(operator, parameters),
            "actions/good.yaml": good,
            "workflows/one.yaml": workflow("p.one", "p.a"),
            "workflows/two.yaml": workflow("p.two", "p.a"),
            "workflows/fine.yaml": workflow("p.fine", "p.good"),
            "workflows/plain.yaml": workflow("p.plain", "core.noop"),
            # calls a workflow that calls the broken action: its DAG holds that task too
            "workflows/outer.yaml": workflow("p.outer", "p.one"),
        },
    )
    assert packs.problems() == []  # nothing static: only compiling finds it
    loaded = load_packs([Path("packs")], cache=None)
    assert set(loaded.dags) == {"p.fine", "p.plain"}
    assert loaded.problems is not None
    assert "workflows left out: p.one, p.outer, p.two" in loaded.problems
    for name in ("one", "two"):
        line = f"packs/p/workflows/{name}.yaml:1:1: error: could not compile: "
        assert f"{line}action 'p.a' (packs/p/actions/a.yaml): {problem}" in loaded.problems, loaded.problems


def test_operators_accepting_the_parameters_compile(packs: PackWriter) -> None:
    files = {
        "actions/opts.yaml": action(f"{HERE}.Inheriting", "  colour: {}\n  size: {}\n  retries: {}\n"),
        "actions/passing.yaml": action(f"{HERE}.Passing", "  weight: {}\n  colour: {}\n", name="b"),
        "workflows/w.yaml": (
            "ref: p.w\ntasks:\n  - name: one\n    action: p.a\n    on_success: [two]\n"
            "  - name: two\n    action: p.b\n    with_items: [1, 2]\n    input: {weight: '{{ item }}'}\n"
        ),
    }
    packs.pack("p", files)
    loaded = load_packs([Path("packs")], cache=None)
    assert loaded.problems is None and set(loaded.dags) == {"p.w"}
