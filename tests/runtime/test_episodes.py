"""Episode replay's core: run messages through a workflow, diff two episodes, render the diff."""

from __future__ import annotations

import pytest

from builder.yaml_io import load
from runtime.episodes import (
    Difference,
    TurnSummary,
    diff_episodes,
    format_side_by_side,
    replay_messages,
)
from tests.app.test_api_chat import GREETER

CHANGED = GREETER.replace("Nice to meet you, {{ name }}!", "Welcome back, {{ name }}.")
REROUTED = GREETER.replace("  - {from: ask_name, to: hi}\n", "  - {from: ask_name, to: nameless}\n").replace(
    "  - {from: ask_name, to: nameless, when: missing}\n", "  - {from: ask_name, to: hi, when: missing}\n"
)


def t(seq: int, reply: str, *, intent: str | None = None, path: tuple[str, ...] = ()) -> TurnSummary:
    return TurnSummary(seq=seq, text=f"message {seq}", reply=reply, intent=intent, path=path)


def test_replay_messages_runs_one_conversation_turn_by_turn():
    out = replay_messages(load(GREETER).workflow, ["hello", "I am Alice"])
    assert [(s.seq, s.text, s.reply, s.waiting) for s in out] == [
        (1, "hello", "What is your name?", True),
        (2, "I am Alice", "Nice to meet you, Alice!", False),
    ]
    assert out[1].path == ("ask_name", "hi") and not out[1].failed
    assert out[1].to_dict()["path"] == ["ask_name", "hi"]


def test_the_same_workflow_replays_without_differences():
    wf = load(GREETER).workflow
    messages = ["hello", "I am Bob"]
    assert diff_episodes(replay_messages(wf, messages), replay_messages(wf, messages)) == []


def test_a_changed_reply_and_a_changed_route_are_reported_per_turn():
    messages = ["hello", "I am Carol"]
    base = replay_messages(load(GREETER).workflow, messages)
    changed = diff_episodes(base, replay_messages(load(CHANGED).workflow, messages))
    assert changed == [
        Difference(2, "reply", "Nice to meet you, Carol!", "Welcome back, Carol.", "I am Carol")
    ]
    rerouted = diff_episodes(base, replay_messages(load(REROUTED).workflow, messages))
    assert [(d.seq, d.field) for d in rerouted] == [(2, "reply"), (2, "path")]
    assert rerouted[1].recorded == ("ask_name", "hi") and rerouted[1].replayed == ("ask_name", "nameless")
    assert rerouted[1].to_dict()["replayed"] == ["ask_name", "nameless"]


def test_diff_pairs_turns_by_position_and_reports_missing_turns():
    recorded = [t(1, "a", intent="faq"), t(2, "b")]
    assert diff_episodes(recorded, [t(1, "a", intent="refund")]) == [
        Difference(1, "intent", "faq", "refund", "message 1"),
        Difference(2, "turn", "b", None, "message 2"),
    ]
    assert diff_episodes([t(1, "a")], [t(1, "a"), t(2, "extra")]) == [
        Difference(2, "turn", None, "extra", "message 2")
    ]
    # Only the fields asked for are compared.
    assert diff_episodes(recorded[:1], [t(1, "a", intent="refund")], fields=("reply",)) == []
    with pytest.raises(ValueError, match="unknown field"):
        diff_episodes(recorded, recorded, fields=("mood",))


def test_side_by_side_marks_the_differing_lines():
    recorded = [t(1, "same", path=("start", "hi")), t(2, "old reply", intent="faq")]
    replayed = [t(1, "same", path=("start", "hi")), t(2, "new reply", intent="faq")]
    text = format_side_by_side(recorded, replayed, width=80)
    lines = text.splitlines()
    assert "recorded" in lines[0] and "replayed" in lines[0]
    reply2 = next(ln for ln in lines if "old reply" in ln)
    assert reply2.startswith("! reply") and "new reply" in reply2
    assert next(ln for ln in lines if "same" in ln).startswith("  reply")
    assert next(ln for ln in lines if "start -> hi" in ln).startswith("  path")
    assert lines[-1] == "1 of 2 turn(s) differ"
    assert format_side_by_side(recorded, recorded).splitlines()[-1] == "no differences"
