"""``llm``: answer with a language model, from a system prompt, the recent conversation and
optionally retrieved knowledge; streams the reply to the user."""

from __future__ import annotations

import json
from typing import Any, Literal

from pydantic import Field, field_validator

from builder.template import MISSING, PATH, lookup, render
from nodes.base import NodeConfig, NodeInput, NodeResult, NodeType, _template_reads
from runtime.context import RunContext

#: Cap on the LLM call under a node policy timeout. Without one the provider's own bound applies
#: (``LLM_TIMEOUT_S``, retries included), so a hung endpoint can't hold a turn longer than that.
DEFAULT_TIMEOUT_S = 60.0


class Config(NodeConfig):
    prompt: str = Field(
        min_length=1,
        max_length=20_000,
        description="System instruction: role, tone, rules. {{ variables }} allowed.",
    )
    tier: Literal["cheap", "strong", "auto"] = Field(
        default="auto", description="Model tier; auto = the tier the router chose (cheap if none)."
    )
    temperature: float = Field(default=0.2, ge=0.0, le=2.0, description="Sampling temperature.")
    max_tokens: int | None = Field(default=None, ge=1, le=16_384, description="Cap on reply tokens.")
    respond: bool = Field(default=True, description="Say the answer to the user (streamed).")
    history: int = Field(default=6, ge=0, le=50, description="How many recent messages the model sees.")
    knowledge: str | None = Field(
        default=None,
        pattern=rf"^{PATH}$",
        description="Variable holding a knowledge node's result (e.g. faq_docs); grounds the answer.",
    )
    json_output: bool = Field(default=False, description="Ask for a JSON object; parsed into value.json.")

    @field_validator("knowledge", mode="before")
    @classmethod
    def _bare_path(cls, v: Any) -> Any:
        # Accept "{{ faq_docs }}" as well as "faq_docs": it names a variable either way.
        return v.strip().removeprefix("{{").removesuffix("}}").strip() if isinstance(v, str) else v


def _tier(cfg: Config, inp: NodeInput) -> str:
    if cfg.tier != "auto":
        return cfg.tier
    route = inp.vars.get("route")
    tier = route.get("tier") if isinstance(route, dict) else None
    return tier if tier in ("cheap", "strong") else "cheap"


def _knowledge_block(value: Any) -> str:
    """The ``Knowledge:`` section: one ``- [title] text`` line per passage (the offline provider's
    grounding convention; real models read it as plain context)."""
    passages = value.get("passages") if isinstance(value, dict) else None
    lines = [
        f"- [{p.get('title', '')}] {' '.join(str(p.get('text', '')).split())}"
        for p in passages or []
        if isinstance(p, dict) and p.get("text")
    ]
    return "Knowledge:\n" + ("\n".join(lines) if lines else "- (no relevant passages were found)")


def build_messages(cfg: Config, inp: NodeInput) -> list[dict[str, str]]:
    system = render(cfg.prompt, inp.vars)
    if cfg.knowledge:
        found = lookup(inp.vars, cfg.knowledge)
        system = f"{system.rstrip()}\n\n{_knowledge_block(None if found is MISSING else found)}"
    turns = [
        {"role": str(m["role"]), "content": str(m.get("content") or "")}
        for m in inp.messages
        if m.get("role") in ("user", "assistant")
    ]
    recent = turns[-cfg.history :] if cfg.history else []
    if not any(m["role"] == "user" for m in recent) and inp.message:
        recent.append({"role": "user", "content": inp.message})
    return [{"role": "system", "content": system}, *recent]


def run(cfg: Config, inp: NodeInput, ctx: RunContext) -> NodeResult:
    tier = _tier(cfg, inp)
    response = ctx.llm.chat(
        build_messages(cfg, inp),
        tier=tier,
        temperature=cfg.temperature,
        max_tokens=cfg.max_tokens,
        json_mode=cfg.json_output,
        on_token=ctx.on_token if cfg.respond else None,
        timeout_s=ctx.remaining(DEFAULT_TIMEOUT_S) if ctx.deadline is not None else None,
    )
    ctx.emit("llm_call", **response.event())
    value: dict[str, Any] = {
        "text": response.text,
        "model": response.model,
        "tier": response.tier,
        "usage": {
            "prompt_tokens": response.usage.prompt_tokens,
            "completion_tokens": response.usage.completion_tokens,
            "cost_usd": round(response.cost_usd, 8),
        },
    }
    reply = response.text
    if cfg.json_output:
        try:
            value["json"] = json.loads(response.text)
        except ValueError as e:
            raise ValueError(f"the model did not return valid JSON: {e}") from None
        # Say the conventional "reply" field when there is one, never raw JSON.
        said = value["json"].get("reply") if isinstance(value["json"], dict) else None
        reply = str(said) if said else ""
    return NodeResult(value=value, reply=reply if cfg.respond and reply else None)


def _reads(cfg: Config) -> list[str]:
    return [*_template_reads(cfg), *([cfg.knowledge] if cfg.knowledge else [])]


NODE = NodeType(
    type="llm",
    title="LLM",
    group="AI",
    icon="sparkles",
    config=Config,
    run=run,
    description=__doc__ or "",
    can_fail=True,
    reads=_reads,
)
