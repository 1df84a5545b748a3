"""Structured conditions: ``{left: order.status, op: eq, right: shipped}``, ``all:``, ``any:``,
``not:``. Data, never expressions; regexes run on RE2 (linear time)."""

from __future__ import annotations

from typing import Any, Literal

import re2
from pydantic import BaseModel, ConfigDict, Field, field_validator

from builder.template import MISSING, TEMPLATE_RE, lookup

Op = Literal[
    "eq",
    "ne",
    "gt",
    "gte",
    "lt",
    "lte",
    "contains",
    "not_contains",
    "in",
    "not_in",
    "exists",
    "not_exists",
    "empty",
    "not_empty",
    "matches",
]


class Comparison(BaseModel):
    model_config = ConfigDict(extra="forbid")
    left: str = Field(description="dotted variable path, e.g. lookup.body.status")
    op: Op = "eq"
    right: Any = None

    @field_validator("right")
    @classmethod
    def _regex_ok(cls, v: Any, info: Any) -> Any:
        if info.data.get("op") == "matches":
            try:
                re2.compile(str(v))
            except re2.error as e:
                raise ValueError(f"invalid regex for 'matches': {e}") from None
        return v


class AllOf(BaseModel):
    model_config = ConfigDict(extra="forbid")
    all: list[Condition] = Field(min_length=1)


class AnyOf(BaseModel):
    model_config = ConfigDict(extra="forbid")
    any: list[Condition] = Field(min_length=1)


class Not(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)
    not_: Condition = Field(alias="not")


Condition = Comparison | AllOf | AnyOf | Not
AllOf.model_rebuild()
AnyOf.model_rebuild()
Not.model_rebuild()


def _right(value: Any, values: dict[str, Any]) -> Any:
    if isinstance(value, str):
        m = TEMPLATE_RE.fullmatch(value.strip())
        if m:
            found = lookup(values, m.group(1))
            return None if found is MISSING else found
    return value


def _num(v: Any) -> float | None:
    try:
        return float(v)
    except (TypeError, ValueError):
        return None


def _compare(c: Comparison, values: dict[str, Any]) -> bool:
    left = lookup(values, c.left)
    if c.op == "exists":
        return left is not MISSING and left is not None
    if c.op == "not_exists":
        return left is MISSING or left is None
    if left is MISSING:
        left = None
    if c.op == "empty":
        return left in (None, "", [], {})
    if c.op == "not_empty":
        return left not in (None, "", [], {})
    right = _right(c.right, values)
    if c.op in ("eq", "ne"):
        equal = (
            left == right
            or (_num(left) is not None and _num(left) == _num(right))
            or (isinstance(left, str) and isinstance(right, str) and left.lower() == right.lower())
        )
        return equal if c.op == "eq" else not equal
    if c.op in ("gt", "gte", "lt", "lte"):
        a, b = _num(left), _num(right)
        if a is None or b is None:
            return False
        return {"gt": a > b, "gte": a >= b, "lt": a < b, "lte": a <= b}[c.op]
    if c.op in ("contains", "not_contains"):
        if isinstance(left, str):
            found = str(right).lower() in left.lower()
        elif isinstance(left, list | dict):
            found = right in left
        else:
            found = False
        return found if c.op == "contains" else not found
    if c.op in ("in", "not_in"):
        pool = right if isinstance(right, list | dict | str) else []
        found = left in pool
        return found if c.op == "in" else not found
    if c.op == "matches":
        return left is not None and re2.search(str(right), str(left)) is not None
    raise ValueError(f"unknown op {c.op}")  # pragma: no cover - Literal guards it


def evaluate(cond: Condition, values: dict[str, Any]) -> bool:
    if isinstance(cond, Comparison):
        return _compare(cond, values)
    if isinstance(cond, AllOf):
        return all(evaluate(c, values) for c in cond.all)
    if isinstance(cond, AnyOf):
        return any(evaluate(c, values) for c in cond.any)
    return not evaluate(cond.not_, values)


def paths(cond: Condition) -> list[str]:
    """Variable paths a condition reads (for 'is this variable set upstream?')."""
    if isinstance(cond, Comparison):
        out = [cond.left]
        if isinstance(cond.right, str):
            out += TEMPLATE_RE.findall(cond.right)
        return out
    if isinstance(cond, AllOf):
        return [p for c in cond.all for p in paths(c)]
    if isinstance(cond, AnyOf):
        return [p for c in cond.any for p in paths(c)]
    return paths(cond.not_)
