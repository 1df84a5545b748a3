"""Run one conversation turn of a workflow: start it, or resume it where it asked the user.

The engine owns the compiled-graph cache and the checkpointer; everything a node may touch
goes in through the ``RunContext``. The durable runtime (RQ worker, SQL checkpointer, event
store) builds on this same call.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from langgraph.checkpoint.memory import InMemorySaver
from langgraph.types import Command

from builder.schema import Workflow
from core.settings import Settings, get_settings
from runtime.compile import GraphCache, NodeFailed, Resolver, start_input
from runtime.context import Event, EventLog, Handoff, RunContext

APOLOGY = "Sorry, something went wrong on our side. A colleague will follow up with you."
RECURSION_LIMIT = 200
Durability = Literal["sync", "async", "exit"]


@dataclass
class TurnResult:
    turn_id: str
    conversation_id: str
    reply: str
    replies: list[str]
    intent: str | None
    route: dict[str, Any] | None
    path: list[str]
    events: list[dict[str, Any]]
    #: The flow asked the user something and resumes at that node on the next message.
    waiting: bool = False
    error: str | None = None
    usage: dict[str, Any] = field(default_factory=dict)
    handoffs: list[Handoff] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "turn_id": self.turn_id,
            "reply": self.reply,
            "intent": self.intent,
            "path": self.path,
            "waiting": self.waiting,
            "error": self.error,
            "usage": self.usage,
            "events": self.events,
        }


class Engine:
    def __init__(
        self,
        *,
        settings: Settings | None = None,
        llm: Any = None,
        router: Any = None,
        http: Any = None,
        checkpointer: Any = None,
        resolve: Resolver | None = None,
        config_values: Mapping[str, str] | None = None,
        secrets: Mapping[str, str] | None = None,
        registry: dict[str, Any] | None = None,
    ) -> None:
        self.settings = settings or get_settings()
        if llm is None:
            from runtime.llm import get_provider

            llm = get_provider(self.settings)
        if router is None:
            from runtime.router import Router

            router = Router(settings=self.settings)
        if http is None:
            from runtime.http import GuardedClient

            http = GuardedClient(self.settings)
        self.llm, self.router, self.http = llm, router, http
        self.checkpointer = checkpointer if checkpointer is not None else InMemorySaver()
        self.resolve = resolve
        self.config_values = dict(config_values if config_values is not None else self.settings.config_values)
        self.secrets = dict(secrets or {})
        self.cache = GraphCache(registry=registry)

    def graph(self, wf: Workflow, resolve: Resolver | None = None, key: str | None = None) -> Any:
        return self.cache.get(wf, resolve=resolve or self.resolve, checkpointer=self.checkpointer, key=key)

    def run_turn(
        self,
        wf: Workflow,
        conversation_id: str,
        text: str,
        *,
        tenant_id: str = "local",
        turn_id: str | None = None,
        on_token: Callable[[str], None] | None = None,
        on_event: Callable[[Event], None] | None = None,
        budget_left_usd: float | None = None,
        resolve: Resolver | None = None,
        secrets: Mapping[str, str] | None = None,
        durability: Durability | None = None,
        graph_key: str | None = None,
    ) -> TurnResult:
        """One turn. ``durability`` is LangGraph's (None: its default, a checkpoint per step);
        ``resolve``/``secrets`` override the engine's for this turn (one engine serves all tenants).
        """
        turn_id = turn_id or uuid.uuid4().hex
        graph = self.graph(wf, resolve, graph_key)
        config = {"configurable": {"thread_id": conversation_id}, "recursion_limit": RECURSION_LIMIT}
        handoffs: list[Handoff] = []
        log = EventLog(listeners=[on_event] if on_event else [])
        ctx = RunContext(
            llm=self.llm,
            router=self.router,
            http=self.http,
            tenant_id=tenant_id,
            conversation_id=conversation_id,
            turn_id=turn_id,
            config_values=self.config_values,
            secrets=self.secrets if secrets is None else secrets,
            events=log,
            on_token=on_token,
            on_handoff=handoffs.append,
            budget_left_usd=budget_left_usd,
        )
        user_id = f"{turn_id}:user"
        pending = self._pending_ask(graph, config)
        log.emit("turn_started", workflow=wf.id, resumed=pending is not None, text_chars=len(text))
        if pending is not None:
            asked = {"id": f"{turn_id}:asked", "role": "assistant", "content": pending[0], "node": pending[1]}
            inp: Any = Command(
                resume=text,
                update={
                    "messages": [asked, {"id": user_id, "role": "user", "content": text}],
                    "vars": {"message": text},
                },
            )
        else:
            inp = start_input(text, user_id)
        started = time.perf_counter()
        error = None
        try:
            if durability is None:
                graph.invoke(inp, config, context=ctx)
            else:
                graph.invoke(inp, config, context=ctx, durability=durability)
        except NodeFailed as exc:
            error = str(exc)
            log.emit(
                "turn_failed", node=exc.node_id, error=type(exc.error).__name__, message=str(exc.error)[:500]
            )
            log.emit("reply", text=APOLOGY)
        pending_after = self._pending_ask(graph, config)
        ask = pending_after[0] if pending_after else None
        if ask is not None:
            log.emit("reply", text=ask, asking=True, node=pending_after[1])
        replies = [e.payload["text"] for e in log.of_type("reply")]
        routes = [e.payload for e in log.of_type("route_decided")]
        llm_calls = [e.payload for e in log.of_type("llm_call")]
        usage = {
            "llm_calls": len(llm_calls),
            "prompt_tokens": sum(c.get("prompt_tokens", 0) for c in llm_calls),
            "completion_tokens": sum(c.get("completion_tokens", 0) for c in llm_calls),
            "cost_usd": round(sum(c.get("cost_usd", 0.0) for c in llm_calls), 8),
        }
        log.emit(
            "turn_finished",
            duration_ms=round((time.perf_counter() - started) * 1000, 3),
            waiting=ask is not None,
            failed=error is not None,
        )
        return TurnResult(
            turn_id=turn_id,
            conversation_id=conversation_id,
            reply="\n\n".join(replies),
            replies=replies,
            intent=routes[0]["intent"] if routes else None,
            route=routes[0] if routes else None,
            path=[str(e.payload["node"]) for e in log.of_type("node_started")],
            events=[e.to_dict() for e in log.events],
            waiting=ask is not None,
            error=error,
            usage=usage,
            handoffs=handoffs,
        )

    @staticmethod
    def _pending_ask(graph: Any, config: dict[str, Any]) -> tuple[str, str] | None:
        """(question, node id) the conversation is waiting on, if any."""
        snapshot = graph.get_state(config, subgraphs=True)
        for intr in _interrupts(snapshot):
            value = intr.value
            if isinstance(value, dict) and "ask" in value:
                return str(value["ask"]), str(value.get("node") or "")
        return None


def _interrupts(snapshot: Any) -> list[Any]:
    found = list(getattr(snapshot, "interrupts", ()) or ())
    for task in getattr(snapshot, "tasks", ()) or ():
        found.extend(getattr(task, "interrupts", ()) or ())
        if getattr(task, "state", None) is not None:
            found.extend(_interrupts(task.state))
    return found
