"""RunContext: the only I/O handle a node gets (LLM, router, HTTP, secrets, events, asking)."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from builder.template import resolve_refs

if TYPE_CHECKING:
    from runtime.http import GuardedClient
    from runtime.llm import LLMProvider
    from runtime.router import Router


class ReferenceError_(LookupError):
    """A ``${secret:..}`` / ``${config:..}`` name that the tenant or deployment does not define."""


@dataclass
class Event:
    seq: int
    type: str
    ts: float
    payload: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        return {**self.payload, "seq": self.seq, "type": self.type, "ts": round(self.ts, 6)}


@dataclass
class EventLog:
    """Events of one turn, in order. The runtime issue persists them; here they are data."""

    events: list[Event] = field(default_factory=list)
    listeners: list[Callable[[Event], None]] = field(default_factory=list)

    def emit(self, type_: str, **payload: Any) -> Event:
        ev = Event(len(self.events) + 1, type_, time.time(), payload)
        self.events.append(ev)
        for listener in self.listeners:
            listener(ev)
        return ev

    def of_type(self, type_: str) -> list[Event]:
        return [e for e in self.events if e.type == type_]


@dataclass
class Handoff:
    conversation_id: str
    node_id: str
    reason: str
    priority: str = "normal"
    queue: str = "support"
    created: float = field(default_factory=time.time)


@dataclass
class RunContext:
    llm: LLMProvider
    router: Router
    http: GuardedClient
    tenant_id: str = "local"
    conversation_id: str = field(default_factory=lambda: uuid.uuid4().hex)
    turn_id: str = field(default_factory=lambda: uuid.uuid4().hex)
    #: ``${config:NAME}`` values the deployment exposes (an allow-list, never the environment).
    config_values: Mapping[str, str] = field(default_factory=dict)
    #: ``${secret:NAME}`` values of the tenant (decrypted only here, never logged).
    secrets: Mapping[str, str] = field(default_factory=dict)
    events: EventLog = field(default_factory=EventLog)
    #: Called with each streamed reply token.
    on_token: Callable[[str], None] | None = None
    #: Called when a node hands the conversation to a human.
    on_handoff: Callable[[Handoff], None] | None = None
    #: Monthly LLM budget left for the tenant in USD (None = unlimited); the router's cost policy reads it.
    budget_left_usd: float | None = None
    # Set by the runtime around each node.
    node_id: str = ""
    deadline: float | None = None

    def emit(self, type_: str, **payload: Any) -> Event:
        return self.events.emit(type_, node=self.node_id or None, **payload)

    def remaining(self, default: float) -> float:
        """Seconds left before this node's deadline, capped by ``default``."""
        if self.deadline is None:
            return default
        return max(0.001, min(default, self.deadline - time.monotonic()))

    def resolve(self, kind: str, name: str) -> str:
        source = self.secrets if kind == "secret" else self.config_values
        if name not in source:
            raise ReferenceError_(f"${{{kind}:{name}}} is not defined for this tenant/deployment")
        return source[name]

    def resolve_refs(self, text: str) -> str:
        return resolve_refs(text, self.resolve)

    def ask(self, prompt: str) -> str:
        """End the turn with ``prompt`` and return the user's next message (LangGraph interrupt)."""
        from langgraph.types import interrupt

        answer = interrupt({"ask": prompt, "node": self.node_id})
        return str(answer)

    def handoff(self, reason: str, priority: str = "normal", queue: str = "support") -> Handoff:
        h = Handoff(self.conversation_id, self.node_id, reason, priority, queue)
        self.emit("handoff", reason=reason, priority=priority, queue=queue)
        if self.on_handoff:
            self.on_handoff(h)
        return h
