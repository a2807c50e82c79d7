"""The validated model of packs, actions and workflows (docs/language.md).

Frozen pydantic models that forbid unknown keys. Each model keeps the YAML mapping it
was built from (`source`), so any later check can point at the exact line of a value,
until `release_sources` lets go of it once the model is validated.
Nothing here imports Airflow. No `from __future__ import annotations`: pydantic would
evaluate every field's annotation from its text, about a millisecond more per import
(docs/performance.md).
"""

import re
from collections.abc import Callable, Hashable, Iterator
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, field_validator, model_validator

from attune_provider.language.source import Location, MarkedDict, key_location, locate

RunnerType = Literal[
    "python-script",
    "local-shell-cmd",
    "local-shell-script",
    "http-request",
    "inquiry",
    "noop",
    "echo",
    "sleep",
    "airflow",
]
RESERVED_TARGETS = frozenset({"fail", "succeed", "noop"})
PACK_REF_PATTERN = re.compile(r"^[a-z0-9_]+$")
NAME_PATTERN = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_-]*$")
Targets = tuple[str, ...]


class Node(BaseModel):
    """Base of every model: frozen, strict about keys, remembers its YAML source."""

    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)
    _source: Any = PrivateAttr(default=None)

    @model_validator(mode="wrap")
    @classmethod
    def _keep_source(cls, data: Any, handler: Any) -> Any:
        model = handler(data)
        if isinstance(data, MarkedDict):
            model._source = data
        return model

    @property
    def source(self) -> Any:
        source = self._source
        if isinstance(source, DeferredSource):
            source = self._source = source.resolve()
        return source

    def loc(self, *path: Hashable) -> Location:
        """Where the value at `path` below this node is written (or this node itself)."""
        source = self.source
        return locate(source, list(path), getattr(source, "loc", Location("<unknown>")))

    def key_loc(self, key: str) -> Location:
        """Where the key `key` of this node is written."""
        return key_location(self.source, key, self.loc())


class DeferredSource:
    """A model's YAML source not read yet: the parse cache stores the positions of a file's
    models apart from the models and reads them only when something asks for a position
    (validation, when its report is not cached), since they are most of what a model
    weighs and a warm parse never needs them (docs/performance.md)."""

    __slots__ = ("sources", "index")

    def __init__(self, sources: Callable[[], list[Any]], index: int) -> None:
        self.sources, self.index = sources, index

    def resolve(self) -> Any:
        return self.sources()[self.index]


def nodes(node: Node) -> list[Node]:
    """`node` and every model inside it (fields, and tuples of models), in a fixed order
    (a loop, not recursion: the parse cache walks every model it reads)."""
    found: list[Node] = []
    pending = [node]
    while pending:
        model = pending.pop()
        found.append(model)
        for value in model.__dict__.values():
            if isinstance(value, Node):
                pending.append(value)
            elif type(value) is tuple:
                pending.extend(item for item in value if isinstance(item, Node))
    return found


class ItemError(ValueError):
    """A field validator's error about some items of a list (by index): reported at each
    item's position, not at the list's."""

    def __init__(self, message: str, indexes: list[int]) -> None:
        super().__init__(message)
        self.indexes = indexes


def _targets(value: Any) -> Any:
    """`on_success: a` and `on_success: [a, b]` both become a tuple of names."""
    if value is None:
        return ()
    if isinstance(value, str):
        return (value,)
    message = "expected a task name or a list of task names"
    if isinstance(value, list):
        wrong = [index for index, item in enumerate(value) if not isinstance(item, str)]
        if wrong:
            raise ItemError(message, wrong)
        return tuple(value)
    raise ValueError(message)


class DecisionBranch(Node):
    """One entry of `decision`: `{when, next}` or `{default}`."""

    when: str | bool | None = None
    next: str | None = None
    default: str | None = None

    @model_validator(mode="after")
    def _shape(self) -> "DecisionBranch":
        if self.default is not None and (self.when is not None or self.next is not None):
            raise ValueError("a decision entry is either {when, next} or {default}, not both")
        if self.default is None and (self.when is None or self.next is None):
            raise ValueError("a decision entry needs both 'when' and 'next' (or only 'default')")
        return self

    @property
    def target(self) -> str:
        return self.default if self.default is not None else str(self.next)


MAX_SECONDS = 10**9  # about 31 years: any longer duration is a mistake (and overflows timedelta)


class Retry(Node):
    count: int = Field(ge=0, le=10_000, strict=True)
    delay: float = Field(default=0, ge=0, le=MAX_SECONDS, allow_inf_nan=False, strict=True)
    backoff: Literal["constant", "linear", "exponential"] = "constant"
    max_delay: float | None = Field(default=None, ge=0, le=MAX_SECONDS, allow_inf_nan=False, strict=True)
    on_error: str | bool | None = None

    def delay_before(self, retry_number: int) -> float:
        """Seconds to wait before retry `retry_number` (1 = first retry), capped by max_delay,
        else by MAX_SECONDS (so that a long exponential backoff stays a valid duration)."""
        if self.backoff == "linear":
            delay = self.delay * retry_number
        elif self.backoff == "exponential":
            delay = self.delay * 2 ** min(retry_number - 1, 64)
        else:
            delay = self.delay
        return min(delay, self.max_delay if self.max_delay is not None else MAX_SECONDS)


class Task(Node):
    name: str
    action: str | None = None
    type: Literal["action", "parallel"] = "action"
    tasks: "tuple[Task, ...]" = ()
    input: dict[str, Any] = Field(default_factory=dict)
    publish: tuple[dict[str, Any], ...] = ()
    on_success: Targets = ()
    on_failure: Targets = ()
    on_complete: Targets = ()
    on_timeout: Targets = ()
    decision: tuple[DecisionBranch, ...] = ()
    when: str | bool | None = None
    with_items: str | list[Any] | None = None
    batch_size: int | None = Field(default=None, ge=1, strict=True)
    concurrency: int | None = Field(default=None, ge=1, strict=True)
    retry: Retry | None = None
    timeout: float | None = Field(default=None, gt=0, le=MAX_SECONDS, allow_inf_nan=False, strict=True)
    join: Literal["all"] | None = None

    _normalise_targets = field_validator(
        "on_success", "on_failure", "on_complete", "on_timeout", mode="before"
    )(_targets)

    @field_validator("publish", mode="before")
    @classmethod
    def _publish_shape(cls, value: Any) -> Any:
        if isinstance(value, dict):
            raise ValueError("publish is a list of one-key mappings, e.g. '- name: \"{{ ... }}\"'")
        wrong = [i for i, entry in enumerate(value or ()) if not isinstance(entry, dict) or len(entry) != 1]
        if wrong:
            raise ItemError("each publish entry is a mapping with exactly one key: '- var: template'", wrong)
        return value

    @property
    def publishes(self) -> list[tuple[str, Any]]:
        return [next(iter(entry.items())) for entry in self.publish]

    def transitions(self) -> Iterator[tuple[str, int, str]]:
        """Every (key, index, target) this task names, for checks and graph building."""
        for key in ("on_success", "on_failure", "on_complete", "on_timeout"):
            for index, target in enumerate(getattr(self, key)):
                yield key, index, target
        for index, branch in enumerate(self.decision):
            yield "decision", index, branch.target

    def target_loc(self, key: str, index: int) -> Location:
        if key == "decision":
            branch = self.decision[index]
            return branch.loc("default" if branch.default is not None else "next")
        raw = self.source.get(key) if isinstance(self.source, dict) else None
        return self.loc(key, index) if isinstance(raw, list) else self.loc(key)


SECRET_NAME_PATTERN = re.compile(r"[A-Za-z0-9_]+")  # fullmatch: a final newline is refused too
DEFAULT_SECRET_NAMESPACE = "main"


class SecretDeclaration(Node):
    """One secret a confidential workflow may read (docs/confidential.md)."""

    key: str
    namespace: str = DEFAULT_SECRET_NAMESPACE

    @field_validator("key", "namespace")
    @classmethod
    def _name(cls, value: str) -> str:
        if not SECRET_NAME_PATTERN.fullmatch(value):
            raise ValueError(f"'{value}' must match ^[A-Za-z0-9_]+$")
        return value


class Attributes(Node):
    """A workflow's `attributes`: checked strictly, so that a typo never runs a workflow
    meant to be confidential as a plain one."""

    confidential: bool = False
    secrets: tuple[SecretDeclaration, ...] = ()

    @field_validator("confidential", mode="before")
    @classmethod
    def _boolean(cls, value: Any) -> Any:
        if not isinstance(value, bool):
            raise ValueError(f"'confidential' must be true or false, got {value!r}")
        return value

    @field_validator("secrets")
    @classmethod
    def _once_each(cls, value: tuple[SecretDeclaration, ...]) -> tuple[SecretDeclaration, ...]:
        seen: dict[str, int] = {}
        twice = []
        for index, secret in enumerate(value):
            if secret.key in seen:
                twice.append(index)
            seen.setdefault(secret.key, index)
        if twice:
            names = ", ".join(sorted({value[i].key for i in twice}))
            raise ItemError(f"secret {names} declared twice (a template reads it as secrets.<key>)", twice)
        return value


class AssetSchedule(Node):
    """`schedule: {assets: [...]}`: a run once every listed Airflow Asset was updated."""

    assets: tuple[str, ...] = Field(min_length=1)


class Workflow(Node):
    ref: str
    label: str | None = None
    description: str | None = None
    version: str | None = None
    parameters: dict[str, dict[str, Any]] = Field(default_factory=dict)
    output: dict[str, Any] | None = None
    vars: dict[str, Any] = Field(default_factory=dict)
    tasks: tuple[Task, ...] = Field(min_length=1)
    output_map: Any = None
    attributes: Attributes = Field(default_factory=Attributes)
    tags: tuple[str, ...] = ()
    schedule: str | AssetSchedule | None = None  # cron or preset; assets; None: manual only
    produces: tuple[str, ...] = ()  # Asset URIs its final step updates when it succeeds

    _version = field_validator("version", mode="before")(lambda v: None if v is None else str(v))

    @property
    def pack(self) -> str:
        return self.ref.split(".", 1)[0]

    @property
    def name(self) -> str:
        return self.ref.split(".", 1)[-1]


class Action(Node):
    name: str
    runner_type: RunnerType
    entry_point: str = ""
    description: str | None = None
    enabled: bool = True
    parameters: dict[str, dict[str, Any]] = Field(default_factory=dict)
    output: dict[str, Any] | None = None
    operator: str | None = None  # runner_type airflow: `module.Class` of a BaseOperator


RuleTriggerType = Literal["core.cron", "core.interval", "core.asset"]


class RuleTrigger(Node):
    type: RuleTriggerType
    parameters: dict[str, Any] = Field(default_factory=dict)


class RuleAction(Node):
    ref: str
    parameters: dict[str, Any] = Field(default_factory=dict)


class Rule(Node):
    """A pack's `rules/<name>.yaml`: start a workflow with parameters when a trigger fires."""

    ref: str
    description: str | None = None
    enabled: bool = True
    trigger: RuleTrigger
    action: RuleAction

    @field_validator("enabled", mode="before")
    @classmethod
    def _boolean(cls, value: Any) -> Any:
        if not isinstance(value, bool):
            raise ValueError(f"'enabled' must be true or false, got {value!r}")
        return value

    @property
    def pack(self) -> str:
        return self.ref.split(".", 1)[0]


class Pack(Node):
    ref: str
    label: str | None = None
    description: str | None = None
    version: str | None = None
    dependencies: tuple[str, ...] = ()

    _version = field_validator("version", mode="before")(lambda v: None if v is None else str(v))

    @field_validator("ref")
    @classmethod
    def _ref_pattern(cls, value: str) -> str:
        if not PACK_REF_PATTERN.match(value):
            raise ValueError(f"pack ref '{value}' must match ^[a-z0-9_]+$")
        return value


_SHARED_FIELDS_SETS: dict[frozenset[str], frozenset[str]] = {}
_RELEASED_PRIVATE: dict[str, Any] = {"_source": None}


def release_sources(node: Node) -> None:
    """Drop the YAML source of `node` and of the models inside it: a validated model's
    errors have all been reported, and its positions are most of its memory.

    Each model then shares its private attributes (`_source` None, never set again on a
    validated model) and its set of given fields (read, never changed: frozen models) with
    every model like it: per model those were two small containers larger than its fields,
    about half the memory a compiled workflow keeps (docs/performance.md).
    """
    for model in nodes(node):
        fields_set = frozenset(model.__pydantic_fields_set__)
        shared = _SHARED_FIELDS_SETS.setdefault(fields_set, fields_set)
        object.__setattr__(model, "__pydantic_fields_set__", shared)
        object.__setattr__(model, "__pydantic_private__", _RELEASED_PRIVATE)
