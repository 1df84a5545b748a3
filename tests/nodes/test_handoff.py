"""``handoff``: hands the conversation to a human, tells the user, never asks."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from nodes.handoff import NODE, Config, run
from runtime.context import Handoff
from tests.nodes import make_ctx, make_engine, make_input, workflow


def test_run_hands_off_with_rendered_reason_and_priority():
    got: list[Handoff] = []
    ctx = make_ctx(on_handoff=got.append, conversation_id="conv-1")
    cfg = Config(
        reason="Complaint about order {{ order_id }}",
        priority="urgent",
        queue="complaints",
        message="Sorry {{ name }}, a colleague will take over.",
    )
    res = run(cfg, make_input("this is unacceptable", {"order_id": "48213", "name": "Ana"}), ctx)
    assert res.reply == "Sorry Ana, a colleague will take over."
    assert res.value == {
        "status": "waiting_human",
        "reason": "Complaint about order 48213",
        "priority": "urgent",
        "queue": "complaints",
    }
    assert [(h.conversation_id, h.reason, h.priority) for h in got] == [
        ("conv-1", "Complaint about order 48213", "urgent")
    ]
    assert ctx.events.of_type("handoff")[0].payload["priority"] == "urgent"


def test_default_reason_is_the_message():
    got: list[Handoff] = []
    run(Config(), make_input("I want a human"), make_ctx(on_handoff=got.append))
    assert got[0].reason == "I want a human" and got[0].priority == "normal"


def test_terminal_and_never_waits_through_the_engine():
    assert NODE.terminal and not NODE.asks_user and not NODE.can_fail
    wf = workflow("""version: 1
id: ho
name: Handoff
nodes:
  - id: start
    type: start
  - id: human
    type: handoff
    config: {priority: high}
edges:
  - {from: start, to: human}
""")
    r = make_engine().run_turn(wf, "ho-1", "agent please")
    assert not r.waiting and r.path == ["start", "human"]
    assert r.reply.startswith("I'm connecting you") and [h.priority for h in r.handoffs] == ["high"]


@pytest.mark.parametrize(
    "cfg", [{"priority": "asap"}, {"queue": "has space"}, {"queue": ""}, {"message": ""}, {"reason": ""}]
)
def test_bad_configs_are_refused(cfg):
    with pytest.raises(ValidationError):
        Config.model_validate(cfg)
