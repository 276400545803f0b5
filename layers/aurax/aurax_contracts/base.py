"""Shared model base and the error formatting every entry point uses for bad input."""

from __future__ import annotations

import difflib
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError


class Contract(BaseModel):
    """Base of every contract: unknown fields rejected, values validated on assignment too.

    Non-finite floats are written as the JSON constants NaN/Infinity so that a diverged loss survives a
    round trip instead of silently becoming null.
    """

    model_config = ConfigDict(
        extra="forbid",
        validate_assignment=True,
        validate_default=True,
        ser_json_inf_nan="constants",
        use_attribute_docstrings=True,
    )


class ContractError(ValueError):
    """A document failed validation; the message names each field and how to fix it."""

    def __init__(self, what: str, problems: list[str]) -> None:
        self.what = what
        self.problems = problems
        lines = "\n".join(f"  - {p}" for p in problems)
        # "invalid X" reads right whether X is a file, a setting or "aurax estimate arguments"
        super().__init__(f"invalid {what} ({len(problems)} problem{'s' if len(problems) != 1 else ''}):\n{lines}")


def _fix_hint(error: dict[str, Any], model: type[BaseModel] | None, loc: tuple[Any, ...]) -> str:
    kind = error["type"]
    ctx = error.get("ctx") or {}
    if kind == "extra_forbidden":
        known = _known_fields(model, loc[:-1])
        close = difflib.get_close_matches(str(loc[-1]), known, n=1)
        suggestion = f"did you mean '{close[0]}'? " if close else ""
        return f"remove it; {suggestion}known fields here: {', '.join(sorted(known)) or '(none)'}"
    if kind == "missing":
        return "add this field"
    bounds = {"greater_than": "above {gt}", "greater_than_equal": "at least {ge}", "less_than": "below {lt}",
              "less_than_equal": "at most {le}"}
    if kind in bounds:
        return "use a value " + bounds[kind].format(**ctx)
    if kind == "literal_error":
        return f"use one of {ctx.get('expected')}"
    if kind in ("string_pattern_mismatch",):
        return f"match the pattern {ctx.get('pattern')}"
    if kind in ("too_short", "too_long"):
        return "change the number of items"
    return f"give a valid {kind.split('_')[0]}"


def _known_fields(model: type[BaseModel] | None, loc: tuple[Any, ...]) -> list[str]:
    current: Any = model
    for part in loc:
        if not (isinstance(current, type) and issubclass(current, BaseModel)):
            return []
        field = current.model_fields.get(str(part))
        if field is None:
            return []
        current = field.annotation
    if isinstance(current, type) and issubclass(current, BaseModel):
        return list(current.model_fields)
    return []


def describe_validation_error(what: str, error: ValidationError, model: type[BaseModel] | None = None) -> ContractError:
    """Turn a pydantic error into one line per problem: `field.path: message (got X); fix: hint` (a validator's
    own message, which names its fix, stands alone)."""
    problems = []
    for item in error.errors(include_url=False):
        loc = tuple(item["loc"])
        path = ".".join(str(p) for p in loc) or "(document)"
        got = item.get("input")
        shown = "" if item["type"] in ("missing",) or isinstance(got, dict) else f" (got {got!r:.60})"
        if item["type"] == "value_error":  # our own validators' messages say what to change
            problems.append(f"{path}: {item['msg'].removeprefix('Value error, ')}{shown}")
        else:
            problems.append(f"{path}: {item['msg']}{shown}; fix: {_fix_hint(item, model, loc)}")
    return ContractError(what, problems)
