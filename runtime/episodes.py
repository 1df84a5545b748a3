"""Episode replay: run a conversation's user messages through a workflow and compare the outcome.

The core is pure apart from the engine it is given:

* :func:`replay_messages` runs messages, in order, as ONE conversation through
  ``runtime.engine.Engine`` (an in-memory checkpointer unless the engine has another) and sums
  each turn up as a :class:`TurnSummary`;
* :func:`diff_episodes` compares two episodes turn by turn (reply, intent, path) and returns
  :class:`Difference` rows; an empty list means "same behaviour";
* :func:`format_side_by_side` renders both episodes and their differences for a terminal.

``flowdesk replay --conversation CID --workflow FILE`` feeds a recorded conversation
(:func:`recorded_episode`, from the ``turns`` table) through another version of the workflow;
conversation test files (``flowdesk test``) can build the expected side by hand.
"""

from __future__ import annotations

import textwrap
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from builder.schema import Workflow

#: What :func:`diff_episodes` compares by default, in this order.
FIELDS: tuple[str, ...] = ("reply", "intent", "path")


@dataclass(frozen=True)
class TurnSummary:
    """What one turn did, in the terms a regression test compares."""

    seq: int
    text: str
    reply: str
    intent: str | None = None
    path: tuple[str, ...] = ()
    waiting: bool = False
    failed: bool = False
    handoff: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "path": list(self.path)}

    @classmethod
    def from_result(cls, seq: int, text: str, result: Any) -> TurnSummary:
        """From a ``runtime.engine.TurnResult``."""
        return cls(
            seq=seq,
            text=text,
            reply=result.reply or "",
            intent=result.intent,
            path=tuple(result.path),
            waiting=bool(result.waiting),
            failed=result.error is not None,
            handoff=bool(result.handoffs),
        )


@dataclass(frozen=True)
class Difference:
    """One field of one turn that differs (``field == "turn"``: one side has no such turn)."""

    seq: int
    field: str
    recorded: Any
    replayed: Any
    text: str = ""

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        for side in ("recorded", "replayed"):
            if isinstance(out[side], tuple):
                out[side] = list(out[side])
        return out


@dataclass
class Episode:
    """A recorded conversation: its workflow and the turns the bot answered, oldest first."""

    conversation_id: str
    workflow: str
    version: int | None
    turns: list[TurnSummary] = field(default_factory=list)


def replay_messages(
    wf: Workflow,
    messages: Iterable[str],
    *,
    engine: Any = None,
    conversation_id: str | None = None,
    tenant_id: str = "replay",
) -> list[TurnSummary]:
    """Run ``messages`` in order as one new conversation of ``wf``; one summary per message.

    ``engine`` defaults to an offline ``Engine()`` with an in-memory checkpointer (no database,
    no queue); pass one built by ``runtime.cli.local_engine`` to reach the demo API and resolve
    subflows. A node failure does not stop the episode: the turn is summed up as failed.
    """
    if engine is None:
        from runtime.engine import Engine

        engine = Engine()
    cid = conversation_id or f"replay-{uuid.uuid4().hex}"
    out = []
    for seq, text in enumerate(messages, start=1):
        result = engine.run_turn(wf, cid, text, tenant_id=tenant_id)
        out.append(TurnSummary.from_result(seq, text, result))
    return out


def diff_episodes(
    recorded: Sequence[TurnSummary],
    replayed: Sequence[TurnSummary],
    fields: Sequence[str] = FIELDS,
) -> list[Difference]:
    """Turn-by-turn differences of ``fields``, pairing turns by position; [] when they agree."""
    unknown = set(fields) - set(TurnSummary.__dataclass_fields__)
    if unknown:
        raise ValueError(f"unknown field(s) {sorted(unknown)}; expected some of {FIELDS}")
    diffs = []
    for i in range(max(len(recorded), len(replayed))):
        a = recorded[i] if i < len(recorded) else None
        b = replayed[i] if i < len(replayed) else None
        if a is None or b is None:
            present = a or b
            assert present is not None
            diffs.append(
                Difference(
                    present.seq,
                    "turn",
                    a.reply if a else None,
                    b.reply if b else None,
                    present.text,
                )
            )
            continue
        for name in fields:
            left, right = getattr(a, name), getattr(b, name)
            if left != right:
                diffs.append(Difference(a.seq, name, left, right, a.text))
    return diffs


def _show(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, list | tuple):
        return " -> ".join(map(str, value)) or "-"
    return str(value)


def format_side_by_side(
    recorded: Sequence[TurnSummary],
    replayed: Sequence[TurnSummary],
    diffs: Sequence[Difference] | None = None,
    *,
    width: int = 100,
    labels: tuple[str, str] = ("recorded", "replayed"),
) -> str:
    """Both episodes in two columns, turn by turn; ``!`` marks a line whose values differ."""
    diffs = diff_episodes(recorded, replayed) if diffs is None else diffs
    differing = {(d.seq, d.field) for d in diffs}
    col = max(20, (width - 14) // 2)
    lines = [f"{'':12}{labels[0]:<{col}}  {labels[1]}", "-" * min(width, 12 + 2 * col + 2)]
    for i in range(max(len(recorded), len(replayed))):
        a = recorded[i] if i < len(recorded) else None
        b = replayed[i] if i < len(replayed) else None
        present = a or b
        assert present is not None
        lines.append(f"turn {present.seq}: user> {present.text}")
        for name in FIELDS:
            left = _show(getattr(a, name)) if a else "(no turn)"
            right = _show(getattr(b, name)) if b else "(no turn)"
            mark = "!" if (present.seq, name) in differing or (present.seq, "turn") in differing else " "
            lwrap = textwrap.wrap(left, col) or [""]
            rwrap = textwrap.wrap(right, col) or [""]
            for j in range(max(len(lwrap), len(rwrap))):
                head = f"{mark} {name:<8}  " if j == 0 else " " * 12
                lpart = lwrap[j] if j < len(lwrap) else ""
                rpart = rwrap[j] if j < len(rwrap) else ""
                lines.append(f"{head}{lpart:<{col}}  {rpart}".rstrip())
    n = len({d.seq for d in diffs})
    lines.append("")
    lines.append(f"{n} of {max(len(recorded), len(replayed))} turn(s) differ" if diffs else "no differences")
    return "\n".join(lines)


def recorded_episode(tenant_id: str, conversation_id: str) -> Episode:
    """The conversation's answered turns from the ``turns`` table, in seq order.

    Turns the bot held back while a human had the conversation (``held``) and turns still queued
    are left out: the bot said nothing there, so there is nothing to compare.
    """
    from sqlmodel import select

    from core.db import tenant_session
    from core.errors import NotFound
    from runtime import service as svc
    from runtime.models import Conversation, Turn

    with tenant_session(tenant_id) as s:
        conv = s.get(Conversation, conversation_id)
        if conv is None or conv.tenant_id != tenant_id:
            raise NotFound("conversation_not_found", f"no conversation {conversation_id!r}")
        rows = s.exec(
            select(Turn).where(Turn.conversation_id == conv.id).order_by(Turn.seq)  # type: ignore[arg-type]
        ).all()
        turns = [
            TurnSummary(
                seq=t.seq,
                text=t.text,
                reply=t.reply or "",
                intent=t.intent,
                path=tuple(t.path or ()),
                waiting=t.waiting,
                failed=t.status == svc.FAILED,
            )
            for t in rows
            if not t.held and t.status in (svc.DONE, svc.FAILED)
        ]
        return Episode(conv.id, conv.workflow_slug, conv.version, turns)
