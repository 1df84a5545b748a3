"""``classify``: intent routing through the real router (rules, MiniLM classifier, offline judge)."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from nodes.classify import NODE, Config, run
from tests.nodes import make_ctx, make_input

INTENTS = [
    {
        "name": "track_order",
        "description": "Where an order or parcel is, its shipping status and delivery date.",
        "examples": [
            "where is my order",
            "track my package",
            "has my parcel shipped yet",
            "when will my order arrive",
            "what's the status of order 12345",
            "my delivery hasn't come",
        ],
        "patterns": [r"\bwhere('s| is) my (order|package|parcel)\b"],
    },
    {
        "name": "faq",
        "description": "General questions: opening hours, payment methods, shipping costs, policies.",
        "examples": [
            "what are your opening hours",
            "do you accept paypal",
            "how much is shipping",
            "what is your return policy",
            "do you ship abroad",
            "which cards can I pay with",
        ],
    },
    {
        "name": "human_handoff",
        "description": "The customer wants to talk to a person.",
        "examples": [
            "let me talk to a human",
            "I want a real person",
            "connect me to an agent",
            "can I speak with someone",
            "get me a representative",
            "stop, human please",
        ],
        "keywords": ["human agent", "representative"],
    },
]


def cfg(**kw) -> Config:
    return Config.model_validate({"intents": INTENTS, **kw})


@pytest.mark.parametrize(
    "text, intent",
    [
        ("where is my order 48213", "track_order"),  # a pattern decides
        ("I need a representative now", "human_handoff"),  # a keyword decides
        ("when does my parcel get delivered?", "track_order"),
        ("can I pay with apple pay?", "faq"),
    ],
)
def test_routes_to_the_intent_and_records_the_decision(text, intent):
    ctx = make_ctx()
    res = run(cfg(), make_input(text), ctx)
    assert res.output == intent and res.set["intent"] == intent
    assert res.set["route"] == res.value and res.value["intent"] == intent
    assert res.value["tier"] in ("cheap", "strong") and res.value["layer"] in (
        "rule",
        "classifier",
        "llm_judge",
    )
    (event,) = ctx.events.of_type("route_decided")
    assert event.payload["intent"] == intent and event.payload["node"] == "n"


def test_out_of_scope_when_nothing_fits():
    res = run(cfg(), make_input("what's the capital of Mongolia?"), make_ctx())
    assert res.output == "out_of_scope" and res.set["intent"] == "out_of_scope"


def test_text_template_chooses_what_is_classified():
    res = run(cfg(text="{{ summary }}"), make_input("hi", {"summary": "where is my package"}), make_ctx())
    assert res.output == "track_order"


def test_judge_call_is_metered_and_can_be_disabled():
    ctx = make_ctx()
    res = run(cfg(threshold=1.0), make_input("how much does shipping cost"), ctx)  # always unsure
    assert res.value["layer"] == "llm_judge" and res.output == "faq"
    (call,) = ctx.events.of_type("llm_call")
    assert call.payload["provider"] == "offline"
    no_judge = make_ctx()
    res = run(cfg(threshold=1.0, judge=False), make_input("how much does shipping cost"), no_judge)
    assert res.value["layer"] == "classifier" and no_judge.events.of_type("llm_call") == []


def test_outputs_and_sets():
    c = cfg()
    assert NODE.all_outputs(c) == ["track_order", "faq", "human_handoff", "out_of_scope"]
    assert NODE.sets(c) == {"intent", "route"}
    assert NODE.reads(c) == ["message"]


@pytest.mark.parametrize(
    "intents",
    [
        [],
        [{"name": "faq"}, {"name": "faq"}],
        [{"name": "out_of_scope"}],
        [{"name": "error"}],
        [{"name": "Not A Slug"}],
        [{"name": "x", "patterns": ["(unclosed"]}],
        [{"name": "x", "unknown": 1}],
    ],
)
def test_bad_configs_are_refused(intents):
    with pytest.raises(ValidationError):
        Config.model_validate({"intents": intents})


def test_bad_threshold_is_refused():
    with pytest.raises(ValidationError):
        cfg(threshold=1.5)
