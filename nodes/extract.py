"""``extract``: fill slots (order number, email, name...) from the message with patterns and the
LLM; asks the user for what is missing and continues with the answer on the next message."""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from builder.template import render
from nodes.base import NodeConfig, NodeInput, NodeResult, NodeType
from runtime.context import RunContext
from runtime.llm import LLMError
from runtime.router import compile_pattern

MISSING_OUTPUT = "missing"
RESERVED = {"message", "intent", "route"}
NAME_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,63}")
EMAIL_RE = re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,24}")
DEFAULT_PATTERNS = {
    "email": EMAIL_RE.pattern,
    "phone": r"\+?\d[\d\s().-]{5,}\d",
    "integer": r"[-+]?\b\d[\d,]*\b",
    "number": r"[-+]?\d+(?:[.,]\d+)?",
}
RETRY_HINTS = {
    "email": "That doesn't look like an email address.",
    "phone": "That doesn't look like a phone number.",
    "integer": "I need a whole number.",
    "number": "I need a number.",
    "text": "Sorry, I didn't catch that.",
}
#: Lead-ins stripped from a bare answer ("it's Acme" -> "Acme").
LEAD_IN_RE = re.compile(
    r"^(?:it'?s|it is|that'?s|this is|i am|i'?m|we are|we'?re|call me|my \w+(?: \w+)? is)\s+", re.I
)
BARE_MAX_WORDS = 8
BARE_MAX_CHARS = 80
FieldType = Literal["text", "number", "integer", "email", "phone"]


#: Tenant patterns run on RE2 (linear time, bounded memory), compiled once.
_re2 = lru_cache(maxsize=512)(compile_pattern)


class FieldSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")
    description: str = Field(default="", max_length=500, description="What the value is (helps the LLM).")
    pattern: str | None = Field(
        default=None, max_length=500, description="RE2 regex; capture group 1 if present, else the match."
    )
    type: FieldType = Field(default="text", description="Checked and converted: number, email...")
    ask: str | None = Field(default=None, max_length=1000, description="Question asked when it is missing.")
    required: bool = Field(default=True, description="Without it the node takes its 'missing' output.")

    @field_validator("pattern")
    @classmethod
    def _compiles(cls, v: str | None) -> str | None:
        if v is not None:
            _re2(v)  # raises ValueError naming the pattern
        return v


class Config(NodeConfig):
    fields: dict[str, FieldSpec] = Field(
        min_length=1, max_length=20, description="Slot name -> how to find it."
    )
    use_llm: bool = Field(default=True, description="Ask the LLM for fields the patterns miss.")
    max_asks: int = Field(default=2, ge=0, le=5, description="Questions per missing field before giving up.")
    source: Literal["message"] = Field(default="message", description="Where to look first.")
    ask_first: bool = Field(
        default=False,
        description="Ignore the current message and always ask (confirmations: 'Shall I place it?').",
    )

    @field_validator("fields")
    @classmethod
    def _names_ok(cls, v: dict[str, FieldSpec]) -> dict[str, FieldSpec]:
        bad = [k for k in v if not NAME_RE.fullmatch(k) or k in RESERVED]
        if bad:
            raise ValueError(f"field names must be identifiers and not {sorted(RESERVED)}: {bad}")
        return v


def coerce(raw: Any, kind: FieldType) -> Any:
    """The value converted to ``kind``, or None when it is not one."""
    if raw is None or isinstance(raw, bool | dict | list):
        return None
    if isinstance(raw, int | float) and kind == "integer":
        return int(raw) if float(raw).is_integer() else None
    if isinstance(raw, int | float) and kind == "number":
        return raw
    s = " ".join(str(raw).split()).strip(" .,;:!?\"'")
    if not s or len(s) > 500:
        return None
    if kind == "email":
        return s if EMAIL_RE.fullmatch(s) else None
    if kind == "phone":
        digits = re.sub(r"\D", "", s)
        if not (7 <= len(digits) <= 15 and re.fullmatch(r"\+?[\d\s().-]+", s)):
            return None
        return ("+" if s.startswith("+") else "") + digits
    if kind == "integer":
        t = s.replace(",", "")
        return int(t) if re.fullmatch(r"[-+]?\d{1,18}", t) else None
    if kind == "number":
        t = s.replace(",", ".") if s.count(",") == 1 and "." not in s else s.replace(",", "")
        return float(t) if re.fullmatch(r"[-+]?\d+(?:\.\d+)?", t) else None
    return s


def _bare(text: str) -> str | None:
    s = LEAD_IN_RE.sub("", " ".join(text.split())).strip(" .!?\"'")
    return s if s and len(s) <= BARE_MAX_CHARS and len(s.split()) <= BARE_MAX_WORDS else None


def _extract(
    cfg: Config, text: str, names: list[str], ctx: RunContext, asked: str | None = None
) -> dict[str, Any]:
    found: dict[str, Any] = {}
    for name in names:
        spec = cfg.fields[name]
        pattern = spec.pattern or DEFAULT_PATTERNS.get(spec.type)
        if not pattern:
            continue
        compiled = _re2(pattern)
        for m in compiled.finditer(text):
            raw = m.group(1) if compiled.groups >= 1 and m.group(1) is not None else m.group(0)
            if (value := coerce(raw, spec.type)) is not None:
                found[name] = value
                break
    rest = [n for n in names if n not in found]
    if rest and cfg.use_llm and text.strip():
        described = {n: cfg.fields[n].description or n.replace("_", " ") for n in rest}
        try:
            got, response = ctx.llm.extract(text, described)
        except LLMError as exc:
            # The model only adds to what the patterns found: with it down (or its circuit open),
            # the node goes on with the patterns and asks the user for the rest, not an apology.
            ctx.emit("llm_unavailable", error=str(exc)[:500], fallback="patterns")
            got = {}
        else:
            ctx.emit("llm_call", **response.event())
        for n in rest:
            if (value := coerce(got.get(n), cfg.fields[n].type)) is not None:
                found[n] = value
    # A short answer to our own question about a free-text field is the value itself.
    spec = cfg.fields[asked] if asked else None
    if asked and spec and asked not in found and spec.type == "text" and not spec.pattern:
        found.update({asked: v} if (v := _bare(text)) else {})
    return found


def _prompts(cfg: Config, inp: NodeInput) -> dict[str, tuple[str, str]]:
    out = {}
    for name, spec in cfg.fields.items():
        if spec.ask:
            first = render(spec.ask, inp.vars)
            out[name] = (first, f"{RETRY_HINTS[spec.type]} {first}")
    return out


def _original_message(inp: NodeInput, ctx: RunContext, prompts: set[str]) -> str:
    """The message this node started on. On a resumed turn ``vars.message`` is the latest answer,
    and the node re-runs from the top: the trailing (our question, answer) pairs are skipped to
    find it, so the node asks the same questions in the same order on every replay."""
    msgs, i = inp.messages, len(inp.messages)
    while i >= 2 and msgs[i - 1].get("role") == "user" and msgs[i - 2].get("role") == "assistant":
        asked = msgs[i - 2]
        # The runtime may tag the question with the node that asked; else recognise our prompts.
        ours = asked["node"] == ctx.node_id if asked.get("node") else asked.get("content") in prompts
        if not ours:
            break
        i -= 2
    if i == len(msgs):
        return inp.message
    return next((str(m.get("content") or "") for m in reversed(msgs[:i]) if m.get("role") == "user"), "")


def run(cfg: Config, inp: NodeInput, ctx: RunContext) -> NodeResult:
    names = list(cfg.fields)
    prompts = _prompts(cfg, inp)
    found: dict[str, Any] = {}
    if not cfg.ask_first:
        original = _original_message(inp, ctx, {p for pair in prompts.values() for p in pair})
        found = _extract(cfg, original, names, ctx)

    def missing() -> list[str]:
        return [n for n in names if cfg.fields[n].required and n not in found]

    # Ask only when every missing field can be asked for: otherwise no answer can complete it.
    if all(n in prompts for n in missing()):
        for name in missing():
            for attempt in range(cfg.max_asks):
                if name in found:
                    break
                answer = ctx.ask(prompts[name][min(attempt, 1)])
                found.update(_extract(cfg, answer, [n for n in names if n not in found], ctx, asked=name))
    still = missing()
    value = {"fields": found, "missing": still}
    return NodeResult(
        value=value, set={n: found.get(n) for n in names}, output=MISSING_OUTPUT if still else None
    )


NODE = NodeType(
    type="extract",
    title="Extract details",
    group="Data",
    icon="text-cursor-input",
    config=Config,
    run=run,
    description=__doc__ or "",
    outputs=lambda cfg: [MISSING_OUTPUT],
    sets=lambda cfg: set(cfg.fields),
    asks_user=True,
)
