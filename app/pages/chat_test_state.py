"""The chat test page's state: a conversation with the DRAFT through the real runtime.

``send`` records the user's message on the page and starts ``stream_reply``, a background task
that subscribes to the turn's pub/sub channel FIRST, then posts and enqueues the turn (so a fast
worker cannot finish unseen), appends reply tokens as they arrive, lights the running path on
the canvas, and on ``done`` reads the turn's trace back from the event store.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any

import reflex as rx
from starlette.concurrency import run_in_threadpool

from app import chat_ops as ops
from app.state import State
from builder.editor import parsed
from core.db import new_id
from core.errors import ServiceError
from runtime import jobs
from runtime.streams import Subscription
from tenants.principal import Principal

#: Give up listening after this long (a turn's retries included); the turn row is checked again.
STREAM_TIMEOUT_S = jobs.JOB_TIMEOUT_S * (jobs.RETRIES + 1) + 30
#: Re-read the turn row this often while no event arrives (a ``done`` lost by pub/sub).
POLL_S = 3.0


@dataclasses.dataclass
class ChatMessage:
    role: str = "user"  # user | bot
    text: str = ""
    #: Index into ``turns`` (bot messages), -1 for user messages.
    turn: int = -1
    intent: str = ""
    pending: bool = False
    failed: bool = False


@dataclasses.dataclass
class NodeRow:
    node: str = ""
    type: str = ""
    output: str = ""
    duration: str = ""
    tokens: str = ""
    details: str = ""
    errors: str = ""


class ChatTestState(State):
    slug: str = ""
    wf_name: str = ""
    loaded: bool = False
    load_error: str = ""
    draft_valid: bool = True

    graph: dict[str, Any] = {"rev": 0, "nodes": [], "edges": []}
    highlight: list[str] = []

    messages: list[ChatMessage] = []
    busy: bool = False
    chat_error: str = ""

    #: The turn whose trace is shown (index into ``_turns``), -1 before the first reply.
    shown: int = -1
    shown_user: str = ""
    intent: str = ""
    confidence: str = ""
    layer: str = ""
    tier: str = ""
    reason: str = ""
    path: list[str] = []
    trace: list[NodeRow] = []
    tokens: int = 0
    cost: str = ""

    cases: int = 0
    case_name: str = ""
    save_open: bool = False
    save_message: str = ""
    save_ok: bool = False

    _conversation: str = ""
    _yaml: str = ""
    #: Per answered turn: user, reply, intent, path, highlight, decision, nodes, usage.
    _turns: list[dict[str, Any]] = []

    # ------------------------------------------------------------ loading

    def _principal(self) -> Principal | None:
        p = self.principal()
        if p is None:
            self.load_error = "Your session has ended; sign in again."
        return p

    @rx.event
    def load(self) -> None:
        self.loaded, self.load_error, self.chat_error = False, "", ""
        self.slug = str(self.router.page.params.get("id", "") or "")
        self._clear_chat()
        self.save_open, self.save_message = False, ""
        p = self._principal()
        if p is None:
            return
        try:
            view = ops.open_panel(p, self.slug)
        except ServiceError as e:
            self.load_error = e.message
            return
        self.wf_name, self._yaml, self.draft_valid, self.cases = view.name, view.yaml, view.valid, view.cases
        # No "fit": the canvas mounts with these nodes and fits them with the page's own options.
        self.graph = {"rev": int(self.graph.get("rev", 0)) + 1, "fit": False, **view.flow}
        self.loaded = True

    def _clear_chat(self) -> None:
        self._conversation = ""
        self.messages, self._turns, self.highlight = [], [], []
        self.busy = False
        self._show_turn(-1)

    # ------------------------------------------------------------ chatting

    @rx.event
    def send(self, form: dict[str, Any]) -> Any:
        text = str(form.get("message") or "").strip()
        if not text or self.busy:
            return None
        p = self._principal()
        if p is None:
            return None
        self.chat_error = ""
        if not self._conversation:
            try:
                self._conversation = ops.start(p, self.slug)
            except ServiceError as e:
                self.chat_error = e.message
                return None
        self.messages.append(ChatMessage("user", text))
        self.messages.append(ChatMessage("bot", "", pending=True))
        self.busy = True
        self.highlight = []
        return [rx.set_value("chat-input", ""), ChatTestState.stream_reply(text, new_id())]

    @rx.event(background=True)
    async def stream_reply(self, text: str, turn_id: str) -> None:
        async with self:
            p, cid, yaml_text = self.principal(), self._conversation, self._yaml
        if p is None or not cid:
            async with self:
                self._fail("Your session has ended; sign in again.")
            return
        try:
            done = await self._run_turn(p, cid, text, turn_id)
        except ServiceError as e:
            async with self:
                self._fail(e.message)
            return
        except Exception as e:  # Redis or the database away: say so, keep the page usable
            async with self:
                self._fail(f"The message could not be answered: {type(e).__name__}")
            return
        if done is None:
            async with self:
                self._fail("No reply in time; the turn is still queued. Reset and try again.")
            return
        detail = await run_in_threadpool(ops.turn_detail, p, turn_id, parsed(yaml_text))
        async with self:
            self._finish(text, done, detail)

    async def _run_turn(self, p: Principal, cid: str, text: str, turn_id: str) -> dict[str, Any] | None:
        """Subscribe, post, enqueue, stream; the ``done`` payload (None on timeout)."""
        async with Subscription(turn_id, live=True) as sub:
            posted = await run_in_threadpool(ops.post, p, cid, text, turn_id)
            await run_in_threadpool(ops.enqueue, p, posted)
            deadline = time.monotonic() + STREAM_TIMEOUT_S
            last_poll = time.monotonic()
            while time.monotonic() < deadline:
                item = await sub.next(1.0)
                if item is None:
                    if time.monotonic() - last_poll > POLL_S:
                        last_poll = time.monotonic()
                        if (out := await run_in_threadpool(ops.finished, p, turn_id)) is not None:
                            return out
                    continue
                event, data = item
                if event == "done":
                    return data
                async with self:
                    self._live(event, data)
            return await run_in_threadpool(ops.finished, p, turn_id)

    def _live(self, event: str, data: dict[str, Any]) -> None:
        """A streamed event: tokens grow the pending reply, nodes light up as they start."""
        if not self.messages:
            return
        last = self.messages[-1]
        if event == "token":
            last.text += str(data.get("text") or "")
        elif event == "route":
            last.intent = str(data.get("intent") or "")
        elif event == "node" and data.get("status") == "started":
            node = str(data.get("node") or "")
            lit = ops.canvas_highlight(parsed(self._yaml), [node])
            self.highlight = self.highlight + [n for n in lit if n not in self.highlight]
        self.messages = self.messages  # nested change: tell Reflex the list changed

    def _fail(self, message: str) -> None:
        self.busy = False
        self.chat_error = message
        if self.messages and self.messages[-1].pending:
            self.messages[-1] = ChatMessage("bot", message, failed=True)
        self.messages = self.messages

    def _finish(self, text: str, done: dict[str, Any], detail: dict[str, Any]) -> None:
        index = len(self._turns)
        self._turns.append(
            {
                "user": text,
                "reply": str(done.get("reply") or ""),
                "intent": done.get("intent"),
                "path": list(detail["path"]),
                **detail,
            }
        )
        failed = bool(done.get("error")) or bool(detail.get("failed"))
        if self.messages and self.messages[-1].pending:
            self.messages[-1] = ChatMessage(
                "bot",
                str(done.get("reply") or "(no reply)"),
                index,
                str(done.get("intent") or ""),
                False,
                failed,
            )
        self.busy = False
        self._show_turn(index)

    # ------------------------------------------------------------ the trace panel

    @rx.event
    def show_turn(self, index: int) -> None:
        self._show_turn(int(index))

    def _show_turn(self, index: int) -> None:
        t = self._turns[index] if 0 <= index < len(self._turns) else None
        self.shown = index if t else -1
        d = (t or {}).get("decision") or {}
        self.intent, self.confidence = d.get("intent", ""), d.get("confidence", "")
        self.layer, self.tier, self.reason = d.get("layer", ""), d.get("tier", ""), d.get("reason", "")
        self.shown_user = (t or {}).get("user", "")
        self.path = list((t or {}).get("path") or [])
        self.trace = [NodeRow(**r) for r in (t or {}).get("nodes") or []]
        usage = (t or {}).get("usage") or {}
        self.tokens = int(usage.get("prompt_tokens", 0)) + int(usage.get("completion_tokens", 0))
        self.cost = f"${float(usage.get('cost_usd', 0.0)):.4f}" if usage else ""
        if t is not None:
            self.highlight = list(t.get("highlight") or [])

    # ------------------------------------------------------------ reset and save

    @rx.event
    def new_conversation(self) -> Any:
        """A new conversation: the old one (a test) is erased, the next message starts fresh."""
        p = self._principal()
        old = self._conversation
        self._clear_chat()
        self.chat_error = self.save_message = ""
        if p is not None and old:
            ops.discard(p, old)
        return rx.set_focus("chat-input")

    @rx.event
    def open_save(self, value: bool) -> None:
        self.save_open = bool(value)
        if self.save_open:
            self.save_message, self.save_ok = "", False
            self.case_name = self.case_name or f"chat {self.cases + 1}"

    @rx.event
    def set_case_name(self, value: str) -> None:
        self.case_name = value[:200]

    @rx.event
    def save_case(self) -> None:
        p = self._principal()
        if p is None:
            return
        try:
            tests = ops.save_case(p, self.slug, self.case_name, self._turns)
        except ServiceError as e:
            self.save_ok, self.save_message = False, e.message
            return
        self.cases = len(tests.cases)
        self.save_ok, self.save_open = True, False
        self.save_message = (
            f"Saved “{self.case_name.strip()}”: {self.cases} test case(s) now guard publishing."
        )
        self.case_name = ""

    @rx.var
    def can_save(self) -> bool:
        return self.shown >= 0 and not self.busy

    @rx.var
    def turn_count(self) -> int:
        return sum(1 for m in self.messages if m.role == "user")
