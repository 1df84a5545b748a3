"""What the chat test page does: talk to a draft through the real runtime, read turn traces, save
a chat as a conversation test. Plain functions over the services (no Reflex), each checked
against the caller's principal; the pure shaping of a trace for the page is at the bottom.

A message is a ``turns`` row (``runtime.service.post_message``) answered by the queue's worker
(``runtime.jobs.enqueue_turn``: RQ, or the embedded worker thread), exactly as the chat API
answers it; the page listens to the turn's pub/sub channel for the streamed reply.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from typing import Any

from builder import canvas
from builder import conversation_tests as ct
from builder import service as wfs
from builder.editor import parsed
from builder.schema import Workflow
from core.db import get_engine, tenant_session
from core.errors import Invalid, ServiceError
from runtime import events as event_store
from runtime import jobs
from runtime import service as svc
from tenants.principal import Principal
from tenants.tokens import WORKFLOWS_WRITE

#: Events that describe one node's run, by the ``node`` they carry.
_NODE_EVENTS = (
    "node_started",
    "node_finished",
    "node_error",
    "llm_call",
    "tool_called",
    "reply",
    "route_decided",
)


@dataclass
class PanelView:
    slug: str
    name: str
    yaml: str
    valid: bool
    flow: dict[str, Any]
    cases: int = 0
    case_names: list[str] = field(default_factory=list)


def open_panel(p: Principal, slug: str) -> PanelView:
    """The draft to test: its canvas (React Flow JSON) and its saved test cases."""
    p.require(WORKFLOWS_WRITE)
    with tenant_session(p.tenant_id) as s:
        valid = wfs.refresh_validity(s, tenant_id=p.tenant_id, slug=slug)
        row = wfs.get(s, tenant_id=p.tenant_id, slug=slug)
        name, text, tests_yaml = row.name, row.draft_yaml, row.tests_yaml
    wf = parsed(text)
    names = [c.name for c in ct.load_tests(tests_yaml).cases] if tests_yaml else []
    return PanelView(row.slug, name or wf.name, text, valid, canvas.to_flow(wf), len(names), names)


def start(p: Principal, slug: str) -> str:
    """A new test conversation on the draft (validated again first: see ``refresh_validity``)."""
    p.require(WORKFLOWS_WRITE)
    with tenant_session(p.tenant_id) as s:
        wfs.refresh_validity(s, tenant_id=p.tenant_id, slug=slug)
    conv = svc.start_conversation(p.tenant_id, slug, channel="test", draft=True, created_by=p.actor_id)
    return conv.id


def post(p: Principal, conversation_id: str, text: str, turn_id: str) -> svc.Posted:
    """Record the message as turn ``turn_id`` (the caller subscribed to its channel already)."""
    p.require(WORKFLOWS_WRITE)
    return svc.post_message(p.tenant_id, conversation_id, text, turn_id=turn_id)


def enqueue(p: Principal, posted: svc.Posted) -> None:
    jobs.enqueue_turn(p.tenant_id, posted.turn.id, posted.queue)


def finished(p: Principal, turn_id: str) -> dict[str, Any] | None:
    """The turn's API shape once it is answered (None while queued)."""
    turn = svc.get_turn(p.tenant_id, turn_id)
    return None if turn.status == svc.QUEUED else svc.turn_out(turn)


def turn_detail(p: Principal, turn_id: str, wf: Workflow) -> dict[str, Any]:
    """The turn rebuilt from the event store: trace, per-node rows, router decision, highlight."""
    svc.get_turn(p.tenant_id, turn_id)  # 404 for another tenant's turn
    events = event_store.turn_events(get_engine(), p.tenant_id, turn_id)
    tr = event_store.trace(turn_id, events)
    return {
        "path": tr["path"],
        "highlight": canvas_highlight(wf, tr["path"]),
        "decision": decision(tr["route"]),
        "nodes": node_rows(events),
        "usage": tr["usage"],
        "failed": tr["failed"],
    }


def discard(p: Principal, conversation_id: str) -> None:
    """Erase a finished test conversation (messages, events, checkpoints); best effort."""
    with contextlib.suppress(ServiceError):
        svc.delete_conversation(p.tenant_id, conversation_id)


def save_case(p: Principal, slug: str, name: str, turns: list[dict[str, Any]]) -> ct.TestFile:
    """Append the chat as a case (``{user, intent, path, reply}`` per turn) to the workflow's tests."""
    p.require(WORKFLOWS_WRITE)
    name = name.strip()
    if not name:
        raise Invalid("case_name_missing", "give the test case a name")
    if not turns:
        raise Invalid("case_empty", "send at least one message before saving the chat as a test")
    try:
        case = ct.case_from_turns(name, turns)
    except ValueError as e:  # pydantic: a name or a message over the format's limits
        raise Invalid("case_invalid", str(e).splitlines()[0]) from None
    with tenant_session(p.tenant_id) as s:
        return wfs.add_case(s, tenant_id=p.tenant_id, slug=slug, case=case, author=p.actor_id)


# ---------------------------------------------------------------- pure: shaping a trace


def canvas_highlight(wf: Workflow, path: list[str]) -> list[str]:
    """The canvas node ids a turn's path lit: its own nodes, and the subflow node of any
    ``slug/node`` label (the subflow's inner nodes are not on this canvas)."""
    subflow_nodes: dict[str, list[str]] = {}
    for n in wf.nodes:
        if n.type == "subflow":
            subflow_nodes.setdefault(str(n.config.get("workflow") or ""), []).append(n.id)
    out: list[str] = []
    for label in path:
        head, sep, _ = label.partition("/")
        ids = subflow_nodes.get(head, []) if sep else [label]
        out.extend(i for i in ids if i not in out and wf.node(i) is not None)
    return out


def decision(route: dict[str, Any] | None) -> dict[str, str]:
    """The router's decision as display strings (empty when no classify node ran)."""
    if not route:
        return {}
    conf = route.get("confidence")
    return {
        "intent": str(route.get("intent") or "none"),
        "confidence": f"{float(conf):.0%}" if isinstance(conf, int | float) else "",
        "layer": str(route.get("layer") or ""),
        "tier": str(route.get("tier") or ""),
        "reason": str(route.get("reason") or ""),
    }


def node_rows(events: list[dict[str, Any]]) -> list[dict[str, str]]:
    """One row per node run, in order: type, output taken, duration, tokens, what it did, errors."""
    rows: list[dict[str, Any]] = []
    open_rows: dict[str, dict[str, Any]] = {}
    for ev in events:
        kind, node = ev.get("type"), ev.get("node")
        if kind not in _NODE_EVENTS or not node:
            continue
        node = str(node)
        if kind == "node_started":
            row = {"node": node, "type": str(ev.get("node_type") or ""), "output": "", "ms": None,
                   "tokens": 0, "details": [], "errors": []}  # fmt: skip
            rows.append(row)
            open_rows[node] = row
            continue
        row = open_rows.get(node)
        if row is None:
            continue
        if kind == "node_finished":
            row["output"] = str(ev.get("output") or "")
            row["ms"] = ev.get("duration_ms")
        elif kind == "node_error":
            row["errors"].append(f"{ev.get('error')}: {ev.get('message')} (attempt {ev.get('attempt', 1)})")
        elif kind == "llm_call":
            row["tokens"] += int(ev.get("prompt_tokens") or 0) + int(ev.get("completion_tokens") or 0)
            row["details"].append(f"LLM {ev.get('model') or ev.get('provider')} ({ev.get('tier') or '-'})")
        elif kind == "tool_called":
            status = ev.get("status") if ev.get("status") is not None else ev.get("error", "no answer")
            row["details"].append(f"{ev.get('method')} {ev.get('host')}{ev.get('path')} -> {status}")
        elif kind == "reply":
            row["details"].append(f"says: {_short(str(ev.get('text') or ''))}")
        elif kind == "route_decided":
            row["details"].append(f"intent {ev.get('intent')} via {ev.get('layer')}")
    return [
        {
            "node": r["node"],
            "type": r["type"],
            "output": r["output"] or ("failed" if r["errors"] else "(waiting)"),
            "duration": f"{float(r['ms']):.1f} ms" if isinstance(r["ms"], int | float) else "-",
            "tokens": str(r["tokens"]) if r["tokens"] else "-",
            "details": " · ".join(r["details"]),
            "errors": "; ".join(r["errors"]),
        }
        for r in rows
    ]


def _short(text: str, limit: int = 90) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"
