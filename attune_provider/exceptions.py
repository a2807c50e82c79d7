"""One exception hierarchy for everything a user's packs can get wrong."""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from attune_provider.language.source import Problem


class AttuneError(Exception):
    """Base of every error the provider raises on purpose."""


class ValidationError(AttuneError):
    """One or more problems were found; `problems` holds every one of them."""

    def __init__(self, problems: Iterable[Problem]) -> None:
        self.problems = list(problems)
        super().__init__("\n".join(p.format() for p in self.problems))


class ParameterError(AttuneError):
    """Run parameters do not match the workflow's `parameters` schema."""
