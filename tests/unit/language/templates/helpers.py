"""The scope and the `r` shortcut shared by the template test modules."""

from __future__ import annotations

from typing import Any

from attune_provider.language.templates.render import render

SCOPE: dict[str, Any] = {
    "parameters": {
        "items": ["a", "b"],
        "keys": "k",
        "count": 3,
        "name": "world",
        "literal": "{{ 7 * 7 }}",
        "nothing": None,
        "_hidden": "secret",
    },
    "vars": {
        "greeting": "hello",
        "users": [{"name": "ann", "role": "admin"}, {"name": "bob", "role": "dev"}],
    },
    "task": {
        "t1": {"status": "succeeded", "result": {"id": 7, "tags": ["x", "y"]}},
        "skipped": {"status": "skipped", "result": None},
    },
}


def r(template: Any) -> Any:
    return render(template, SCOPE)
