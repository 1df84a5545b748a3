"""``extract``: slot filling with patterns, types and the offline LLM; asking for what is missing
through the real engine (interrupt, resume on the next message)."""

from __future__ import annotations

import httpx
import pytest
from pydantic import ValidationError

from nodes.extract import NODE, Config, coerce, run
from tests.nodes import demo_api, make_ctx, make_engine, make_input, reset_demo, workflow


def cfg(fields: dict, **kw) -> Config:
    return Config.model_validate({"fields": fields, **kw})


# --- values ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "raw, kind, value",
    [
        ("jane@acme.io", "email", "jane@acme.io"),
        ("jane@acme", "email", None),
        ("not an email", "email", None),
        ("+49 30 1234-5678", "phone", "+493012345678"),
        ("12", "phone", None),
        ("1,250", "integer", 1250),
        ("3", "integer", 3),
        ("2.5", "integer", None),
        (4.0, "integer", 4),
        ("2,5", "number", 2.5),
        ("19.90", "number", 19.9),
        ("abc", "number", None),
        ("  Acme Corp. ", "text", "Acme Corp"),
        ("", "text", None),
        (True, "integer", None),
        ({"a": 1}, "text", None),
    ],
)
def test_coerce(raw, kind, value):
    assert coerce(raw, kind) == value


# --- from the message, no asking ------------------------------------------------------------


def test_pattern_with_and_without_group():
    c = cfg(
        {"order_id": {"pattern": r"\b\d{4,}\b"}, "sku": {"pattern": r"sku[:\s]+([A-Z-]+)"}}, use_llm=False
    )
    res = run(c, make_input("where is order 48213? sku: MUG-LOGO"), make_ctx())
    assert res.output is None and res.value == {
        "fields": {"order_id": "48213", "sku": "MUG-LOGO"},
        "missing": [],
    }
    assert res.set == {"order_id": "48213", "sku": "MUG-LOGO"}


def test_first_valid_match_wins_for_typed_fields():
    c = cfg(
        {"email": {"type": "email"}, "qty": {"type": "integer", "pattern": r"(\d+) (?:pcs|pieces|x)"}},
        use_llm=False,
    )
    res = run(c, make_input("3 pieces to bob@example.com please"), make_ctx())
    assert res.value["fields"] == {"email": "bob@example.com", "qty": 3}


def test_llm_fills_what_patterns_miss_and_is_metered():
    ctx = make_ctx()
    c = cfg(
        {
            "name": {"description": "the customer's full name"},
            "email": {"type": "email"},
            "company": {"description": "company name"},
        }
    )
    res = run(c, make_input("Hi, I'm Jane Doe from Acme Corp, jane@acme.io"), ctx)
    assert res.value["fields"] == {"name": "Jane Doe", "email": "jane@acme.io", "company": "Acme Corp"}
    assert len(ctx.events.of_type("llm_call")) == 1  # one call for the fields the patterns missed


def test_llm_down_keeps_the_pattern_matches_and_takes_missing_instead_of_failing():
    import socket

    from core.settings import Settings
    from runtime.llm import OpenAIProvider

    with socket.socket() as sock:  # a port nothing listens on once closed: the endpoint is down
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    settings = Settings(_env_file=None, OPENAI_API_KEY=None, OPENAI_BASE_URL=None, LLM_MAX_RETRIES=0)
    llm = OpenAIProvider(settings, api_key="sk-test", base_url=f"http://127.0.0.1:{port}/v1")
    ctx = make_ctx(llm=llm)
    c = cfg({"email": {"type": "email"}, "company": {"description": "company name"}})
    res = run(c, make_input("I'm jane@acme.io from Acme Corp"), ctx)
    assert res.output == "missing"
    assert res.value == {"fields": {"email": "jane@acme.io"}, "missing": ["company"]}
    [event] = ctx.events.of_type("llm_unavailable")
    assert "cannot connect" in event.payload["error"] and event.payload["fallback"] == "patterns"
    assert ctx.events.of_type("llm_call") == []


def test_missing_required_without_ask_takes_missing_output_without_asking():
    ctx = make_ctx()
    c = cfg(
        {"order_id": {"pattern": r"\d{4,}"}, "email": {"type": "email", "ask": "Your email?"}}, use_llm=False
    )
    res = run(c, make_input("hello"), ctx)  # would raise outside a graph if it tried to ask
    assert res.output == "missing" and res.value["missing"] == ["order_id", "email"]
    assert res.set == {"order_id": None, "email": None}


def test_optional_fields_are_not_asked_for():
    c = cfg(
        {"order_id": {"pattern": r"\d{4,}"}, "note": {"required": False, "ask": "Anything else?"}},
        use_llm=False,
    )
    res = run(c, make_input("order 55120"), make_ctx())
    assert res.output is None and res.value == {"fields": {"order_id": "55120"}, "missing": []}


def test_max_asks_zero_never_asks():
    c = cfg({"order_id": {"pattern": r"\d{4,}", "ask": "Which order?"}}, max_asks=0, use_llm=False)
    assert run(c, make_input("hi"), make_ctx()).output == "missing"


def test_node_declaration():
    c = cfg({"a": {}, "b": {"ask": "b?"}})
    assert NODE.asks_user and NODE.sets(c) == {"a", "b"} and NODE.all_outputs(c) == ["missing"]


@pytest.mark.parametrize(
    "bad",
    [
        {"fields": {}},
        {"fields": {"message": {}}},
        {"fields": {"bad name": {}}},
        {"fields": {"x": {"pattern": "(unclosed"}}},
        {"fields": {"x": {"pattern": r"(a)\1"}}},  # backreferences: not RE2
        {"fields": {"x": {"type": "date"}}},
        {"fields": {"x": {}}, "max_asks": 9},
        {"fields": {"x": {}}, "source": "history"},
        {"fields": {"x": {"asks": "typo"}}},
    ],
)
def test_bad_configs_are_refused(bad):
    with pytest.raises(ValidationError):
        Config.model_validate(bad)


# --- asking, through the engine ---------------------------------------------------------------

TRACK = """version: 1
id: track
name: Track
nodes:
  - id: start
    type: start
  - id: find
    type: extract
    config:
      fields:
        order_id: {pattern: '\\b\\d{4,}\\b', ask: "What is your order number?"}
  - id: lookup
    type: http_request
    config: {url: "${config:ORDERS_API}/orders/{{ order_id }}"}
  - id: answer
    type: reply
    config: {text: "Order {{ order_id }} is {{ lookup.body.status }}."}
  - id: give_up
    type: reply
    config: {text: "Without an order number I can't look it up."}
edges:
  - {from: start, to: find}
  - {from: find, to: lookup}
  - {from: find, to: give_up, when: missing}
  - {from: lookup, to: answer}
"""


def test_found_in_the_first_message_does_not_ask():
    r = make_engine().run_turn(workflow(TRACK), "t0", "where is my order 48213")
    assert not r.waiting and r.reply == "Order 48213 is shipped."


def test_asks_then_resumes_with_the_answer():
    engine, wf = make_engine(), workflow(TRACK)
    r1 = engine.run_turn(wf, "t1", "my package hasn't arrived")
    assert r1.waiting and r1.reply == "What is your order number?" and r1.path == ["start", "find"]
    r2 = engine.run_turn(wf, "t1", "it's 55120")
    assert not r2.waiting and r2.reply == "Order 55120 is in_transit."
    assert r2.path == ["find", "lookup", "answer"]


def test_reasks_then_gives_up_after_max_asks():
    engine, wf = make_engine(), workflow(TRACK)
    engine.run_turn(wf, "t2", "hello")
    r2 = engine.run_turn(wf, "t2", "I don't know it")
    assert r2.waiting and r2.reply == "Sorry, I didn't catch that. What is your order number?"
    r3 = engine.run_turn(wf, "t2", "no idea, sorry")
    assert not r3.waiting and r3.reply == "Without an order number I can't look it up."


LEAD = """version: 1
id: lead
name: Lead
nodes:
  - id: start
    type: start
  - id: collect
    type: extract
    config:
      fields:
        name: {description: "the person's full name", ask: "May I have your name?"}
        email: {type: email, ask: "What's your email address?"}
        company: {description: "company name", ask: "Which company are you with?"}
  - id: store
    type: http_request
    config:
      method: POST
      url: "${config:CRM_API}/leads"
      body: {name: "{{ name }}", email: "{{ email }}", company: "{{ company }}"}
  - id: done
    type: reply
    config: {text: "Thanks {{ name }}, we'll email {{ email }}."}
edges:
  - {from: start, to: collect}
  - {from: collect, to: store}
  - {from: store, to: done}
"""


def test_multi_field_conversation_with_a_bad_answer_and_replays():
    reset_demo()
    engine, wf = make_engine(), workflow(LEAD)
    turns = [
        ("I'd like a demo of your product", "May I have your name?"),
        ("Jane Doe", "What's your email address?"),
        ("jane at acme", "That doesn't look like an email address. What's your email address?"),
        ("jane@acme.io", "Which company are you with?"),
        ("it's Acme Corp", "Thanks Jane Doe, we'll email jane@acme.io."),
    ]
    for text, expected in turns:
        assert engine.run_turn(wf, "lead-1", text).reply == expected
    assert [(x["name"], x["email"], x["company"]) for x in httpx.get(f"{demo_api()}/leads").json()] == [
        ("Jane Doe", "jane@acme.io", "Acme Corp")
    ]


def test_an_answer_can_fill_several_fields_at_once():
    reset_demo()
    engine, wf = make_engine(), workflow(LEAD)
    assert engine.run_turn(wf, "lead-2", "I want to talk to sales").reply == "May I have your name?"
    r = engine.run_turn(wf, "lead-2", "I'm Tom Lee from Globex, tom@globex.com")
    assert r.reply == "Thanks Tom Lee, we'll email tom@globex.com."


def test_fields_in_the_first_message_are_kept_across_the_questions():
    reset_demo()
    engine, wf = make_engine(), workflow(LEAD)
    assert (
        engine.run_turn(wf, "lead-3", "Hi, I'm Ana Silva, ana@initech.com").reply
        == "Which company are you with?"
    )
    assert engine.run_turn(wf, "lead-3", "Initech").reply == "Thanks Ana Silva, we'll email ana@initech.com."


CONFIRM = """version: 1
id: confirm
name: Confirm
nodes:
  - id: start
    type: start
  - id: confirm
    type: extract
    config:
      ask_first: true
      use_llm: false
      fields:
        answer: {pattern: '(?i)\\b(yes|no)\\b', ask: "Shall I place the order? (yes / no)"}
  - id: said
    type: reply
    config: {text: "You said {{ answer }}."}
edges:
  - {from: start, to: confirm}
  - {from: confirm, to: said}
"""


def test_ask_first_ignores_the_current_message():
    engine, wf = make_engine(), workflow(CONFIRM)
    r1 = engine.run_turn(wf, "c-1", "yes I want two mugs")
    assert r1.waiting and r1.reply == "Shall I place the order? (yes / no)"
    assert engine.run_turn(wf, "c-1", "no").reply == "You said no."
