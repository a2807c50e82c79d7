"""The stable codes of validation problems (`validate --format json|sarif`, docs/validation.md).

A code names the check that found a problem, not its wording: messages may be reworded,
codes are not reused for something else. Codes are given where a check's problems are
gathered (one code per check function: `coded(code, problems)` in language/source.py),
so a check's call sites need not name one; a problem no check classified keeps
`UNCLASSIFIED`. Every code is listed in `CODES` (SARIF rules are built from it) and in
the table of docs/validation.md (a test checks that they agree). Imports nothing.
"""

from __future__ import annotations

from typing import NamedTuple


class Code(NamedTuple):
    """A problem code: its id (ATTnnn), a short kebab-case name and what it is about."""

    id: str
    name: str
    summary: str


UNCLASSIFIED = "ATT000"

# --- reading files
READ_FAILED = "ATT001"
NOT_UTF8 = "ATT002"
INVALID_YAML = "ATT003"
DUPLICATE_KEY = "ATT004"
FILE_TOO_LARGE = "ATT005"
# --- the PATHs given to `validate`
NO_SUCH_PATH = "ATT010"
PATH_OUTSIDE_PACKS = "ATT011"
# --- the shape of a file (pack.yaml, actions, workflows, rules)
NOT_A_MAPPING = "ATT101"
UNKNOWN_KEY = "ATT102"
MISSING_KEY = "ATT103"
INVALID_VALUE = "ATT104"
# --- packs
PACK_LAYOUT = "ATT200"
PACK_CONFIG = "ATT201"
PACK_DEPENDENCY = "ATT202"
# --- actions
ACTION_NAME = "ATT301"
ENTRY_POINT = "ATT302"
AIRFLOW_OPERATOR = "ATT303"
# --- workflows
WORKFLOW_REF = "ATT401"
WORKFLOW_TAGS = "ATT402"
PARAMETER_SCHEMA = "ATT403"
WORKFLOW_OUTPUT = "ATT410"
TASK_NAMES = "ATT411"
TASK_SHAPE = "ATT412"
TRANSITIONS = "ATT413"
TASK_GRAPH = "ATT414"
CALLS = "ATT420"
NESTING = "ATT421"
ID_LENGTH = "ATT422"
INVALID_SUBWORKFLOW = "ATT423"
INVALID_PACK_CONFIG = "ATT424"
TEMPLATES = "ATT430"
TASK_COUNT = "ATT440"
ITEM_COUNT = "ATT441"
SCHEDULE = "ATT450"
# --- rules
RULE = "ATT501"
RULE_OF_INVALID_WORKFLOW = "ATT502"
# --- pack tests (`<pack>/tests/*.yaml`, run by `attune-airflow test`)
PACK_TEST = "ATT601"
# --- workflow sources, and the validator itself
SOURCES = "ATT800"
INTERNAL_ERROR = "ATT900"

CODES: dict[str, Code] = {
    code.id: code
    for code in (
        Code(UNCLASSIFIED, "unclassified", "A problem no check has a code for yet."),
        Code(READ_FAILED, "unreadable-file", "A file cannot be read."),
        Code(NOT_UTF8, "not-utf8", "A file is not UTF-8."),
        Code(INVALID_YAML, "invalid-yaml", "A file is not valid YAML."),
        Code(DUPLICATE_KEY, "duplicate-key", "A key is written twice in one YAML mapping."),
        Code(
            FILE_TOO_LARGE,
            "file-too-large",
            "A file is larger than the limit, expands past it through aliases, or nests too deep.",
        ),
        Code(NO_SUCH_PATH, "no-such-path", "A PATH given to validate does not exist."),
        Code(PATH_OUTSIDE_PACKS, "path-outside-packs", "A PATH given to validate is in no pack."),
        Code(NOT_A_MAPPING, "not-a-mapping", "The top of a file is not a mapping."),
        Code(UNKNOWN_KEY, "unknown-key", "A key the file's format does not have."),
        Code(MISSING_KEY, "missing-key", "A required key is missing."),
        Code(INVALID_VALUE, "invalid-value", "A value of the wrong type or outside what is allowed."),
        Code(
            PACK_LAYOUT,
            "pack-layout",
            "Packs directories and files: a missing directory, a pack or definition found twice.",
        ),
        Code(PACK_CONFIG, "pack-config", "A pack's config.yaml is not a valid object schema."),
        Code(PACK_DEPENDENCY, "pack-dependency", "A pack depends on a pack that is not loaded."),
        Code(ACTION_NAME, "action-name", "An action's name is not a valid name."),
        Code(ENTRY_POINT, "entry-point", "An action's entry_point is missing or is not a file of its pack."),
        Code(AIRFLOW_OPERATOR, "airflow-operator", "An action backed by an Airflow operator is misdeclared."),
        Code(WORKFLOW_REF, "workflow-ref", "A workflow's ref does not match its pack, or is too long."),
        Code(WORKFLOW_TAGS, "workflow-tags", "A workflow's tag is longer than Airflow allows."),
        Code(
            PARAMETER_SCHEMA,
            "parameter-schema",
            "A parameter or output schema (of an action or a workflow) is not a valid JSON Schema.",
        ),
        Code(WORKFLOW_OUTPUT, "workflow-output", "A workflow's output schema and output_map disagree."),
        Code(TASK_NAMES, "task-names", "A task name is invalid, reserved or used twice."),
        Code(TASK_SHAPE, "task-shape", "A task's keys do not fit together (action, group, decision...)."),
        Code(TRANSITIONS, "transitions", "A transition names no task or is misused."),
        Code(TASK_GRAPH, "task-graph", "The task graph: unreachable tasks, cycles, joins."),
        Code(CALLS, "calls", "A task calls an unknown action or workflow, or its input does not fit."),
        Code(NESTING, "nesting", "Subworkflows call each other in a cycle or nest too deep."),
        Code(ID_LENGTH, "id-length", "A task id, with its group prefixes, is longer than Airflow allows."),
        Code(INVALID_SUBWORKFLOW, "invalid-subworkflow", "A task calls a workflow that has errors."),
        Code(INVALID_PACK_CONFIG, "invalid-pack-config", "The config.yaml of a workflow's pack has errors."),
        Code(TEMPLATES, "templates", "A template does not parse, or reads a name that does not exist."),
        Code(TASK_COUNT, "task-count", "A workflow has more tasks than the limit."),
        Code(ITEM_COUNT, "item-count", "A with_items list is longer than the limit."),
        Code(SCHEDULE, "schedule", "A workflow's schedule or produced assets are invalid."),
        Code(RULE, "rule", "A rule's ref, trigger, workflow or parameters are invalid."),
        Code(
            RULE_OF_INVALID_WORKFLOW, "rule-of-invalid-workflow", "A rule starts a workflow that has errors."
        ),
        Code(PACK_TEST, "pack-test", "A pack's test file (tests/*.yaml) is invalid: it would not run."),
        Code(SOURCES, "sources", "A workflow source cannot be used."),
        Code(INTERNAL_ERROR, "internal-error", "A check failed on unforeseen input: please report it."),
    )
}
