"""Compiling the valid workflows and rules of a catalog into DAGs, each on its own: a
workflow the compiler cannot build is left out with its problem, never the others."""

from __future__ import annotations

import logging
from collections.abc import Sequence

from airflow.sdk import DAG

from attune_provider.dag_factory.validation.cached import Findings
from attune_provider.language.catalog import Catalog
from attune_provider.language.source import Location, Problem

log = logging.getLogger(__name__)


def compile_workflows(
    catalog: Catalog, refs: Sequence[str], rules: Sequence[str] = ()
) -> tuple[dict[str, DAG], dict[str, list[Problem]]]:
    """DAGs of the given (valid) workflows and rules, and the problem of each one that
    failed to compile."""
    from attune_provider.dag_factory.compiler import build_dag, build_rule_dag
    from attune_provider.language.parameters import parameters_schema
    from attune_provider.language.plan import build_plan

    catalog.release_sources()  # validated: the DAGs need no YAML positions
    dags: dict[str, DAG] = {}
    failed: dict[str, list[Problem]] = {}
    for ref in refs:
        entry = catalog.workflows[ref]
        try:
            dags[ref] = build_dag(build_plan(entry, catalog))
        except Exception as exc:  # noqa: BLE001 - one workflow must not take the others down
            log.exception("could not compile workflow %s", ref)
            failed[ref] = [Problem(Location(entry.display), f"could not compile: {exc}")]
    for ref in rules:
        rule = catalog.rules[ref]
        target = rule.rule.action.ref
        if target in failed:
            message = f"could not compile: workflow '{target}' could not be compiled: this rule is left out"
            failed[ref] = [Problem(Location(rule.display), message)]
            continue
        if target not in catalog.workflows:
            continue
        try:
            dags[ref] = build_rule_dag(rule, parameters_schema(catalog.workflows[target].workflow.parameters))
        except Exception as exc:  # noqa: BLE001 - one rule must not take the others down
            log.exception("could not compile rule %s", ref)
            failed[ref] = [Problem(Location(rule.display), f"could not compile: {exc}")]
    return dags, failed


def usable_rules(catalog: Catalog, report: Findings) -> list[str]:
    """The enabled rules with no error in their file whose workflow is valid (validation
    reports a rule of a broken workflow as an error of the rule's file)."""
    broken_files = {p.location.file for p in report.problems if p.is_error}
    return sorted(
        ref
        for ref, entry in catalog.rules.items()
        if entry.rule.enabled
        and entry.display not in broken_files
        and entry.rule.action.ref not in report.invalid_workflows
    )
