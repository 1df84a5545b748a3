"""``{{ dotted.path }}`` templates and ``${secret:NAME}`` / ``${config:NAME}`` references.

Substitution only: no logic, no filters, no eval. Values are escaped for where they land.
"""

from __future__ import annotations

import html
import json
import re
from collections.abc import Callable, Mapping
from typing import Any, Literal
from urllib.parse import quote

PATH = r"[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z0-9_]+)*"
TEMPLATE_RE = re.compile(r"\{\{\s*(" + PATH + r")\s*\}\}")
ANY_TEMPLATE_RE = re.compile(r"\{\{(.*?)\}\}", re.S)
REF_RE = re.compile(r"\$\{(secret|config):([A-Za-z_][A-Za-z0-9_]*)\}")
ANY_REF_RE = re.compile(r"\$\{([^}]*)\}")
_PLAIN_RE = re.compile(r"\s*" + PATH + r"\s*")

Escape = Literal["text", "url", "html", "json"]
MISSING = object()


def variables(text: str) -> list[str]:
    """Dotted paths used by a template, in order."""
    return TEMPLATE_RE.findall(text)


def syntax_errors(text: str) -> list[str]:
    """Messages for ``{{ ... }}`` and ``${...}`` that are not plain paths / references."""
    if "{{" not in text and "${" not in text:
        return []  # the common case, on every config string of every node
    errs = [
        f"'{{{{{m.group(1)}}}}}' is not a plain variable path (templates substitute values only)"
        for m in ANY_TEMPLATE_RE.finditer(text)
        if not _PLAIN_RE.fullmatch(m.group(1))
    ]
    errs += [
        f"'${{{m.group(1)}}}' is not a reference; use ${{secret:NAME}} or ${{config:NAME}}"
        for m in ANY_REF_RE.finditer(text)
        if not REF_RE.fullmatch(m.group(0))
    ]
    return errs


def lookup(values: Mapping[str, Any], path: str) -> Any:
    """Value at a dotted path (dict keys or list indices), or ``MISSING``."""
    cur: Any = values
    for part in path.split("."):
        if isinstance(cur, Mapping) and part in cur:
            cur = cur[part]
        elif isinstance(cur, list | tuple) and part.isdigit() and int(part) < len(cur):
            cur = cur[int(part)]
        else:
            return MISSING
    return cur


def _text(value: Any) -> str:
    if value is MISSING or value is None:
        return ""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, dict | list):
        return json.dumps(value, ensure_ascii=False, sort_keys=True)
    return str(value)


def render(text: str, values: Mapping[str, Any], escape: Escape = "text") -> str:
    def sub(m: re.Match[str]) -> str:
        raw = _text(lookup(values, m.group(1)))
        if escape == "url":
            return quote(raw, safe="")
        if escape == "html":
            return html.escape(raw)
        if escape == "json":
            return json.dumps(raw)[1:-1]
        return raw

    return TEMPLATE_RE.sub(sub, text)


def render_value(value: Any, values: Mapping[str, Any], escape: Escape = "text") -> Any:
    """Render every string inside a nested value; a string that is exactly one template
    keeps the variable's type (``"{{ qty }}"`` -> 3, not "3")."""
    if isinstance(value, str):
        m = TEMPLATE_RE.fullmatch(value.strip())
        if m and escape == "text":
            found = lookup(values, m.group(1))
            return None if found is MISSING else found
        return render(value, values, escape)
    if isinstance(value, list):
        return [render_value(v, values, escape) for v in value]
    if isinstance(value, dict):
        return {k: render_value(v, values, escape) for k, v in value.items()}
    return value


def references(text: str) -> list[tuple[str, str]]:
    """``[(kind, name)]`` for each ``${secret:NAME}`` / ``${config:NAME}``."""
    return REF_RE.findall(text)


def resolve_refs(text: str, resolve: Callable[[str, str], str]) -> str:
    return REF_RE.sub(lambda m: resolve(m.group(1), m.group(2)), text)


def strings_in(value: Any) -> list[str]:
    """Every string inside a nested config value (for validation scans)."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, list):
        return [s for v in value for s in strings_in(v)]
    if isinstance(value, dict):
        return [s for v in value.values() for s in strings_in(v)]
    return []
