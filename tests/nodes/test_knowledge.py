"""``knowledge``: retrieval over the node's documents; ``not_found`` when nothing scores enough."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from nodes.knowledge import NODE, Config, run
from nodes.llm import Config as LLMConfig
from nodes.llm import run as llm_run
from tests.nodes import make_ctx, make_engine, make_input, workflow

DOCS = [
    {"id": "hours", "title": "Opening hours", "text": "Support answers Monday to Friday, 9:00 to 18:00."},
    {"id": "pay", "title": "Payment methods", "text": "We accept Visa, Mastercard, PayPal and Apple Pay."},
    {"id": "returns", "title": "Returns", "text": "Items can be returned within 30 days of delivery."},
]


def test_finds_passages_and_emits_an_event():
    ctx = make_ctx()
    res = run(Config.model_validate({"documents": DOCS}), make_input("do you take paypal?"), ctx)
    assert res.output is None
    assert res.value["passages"][0]["id"] == "pay" and res.value["query"] == "do you take paypal?"
    assert res.value["text"].startswith("Payment methods: We accept Visa")
    assert set(res.value["passages"][0]) == {"id", "title", "text", "score"}
    (event,) = ctx.events.of_type("knowledge_searched")
    assert event.payload["found"] == len(res.value["passages"]) and event.payload["top"][0][0] == "pay"


def test_not_found_when_nothing_passes_min_score():
    res = run(
        Config.model_validate({"documents": DOCS}), make_input("tell me a joke about penguins"), make_ctx()
    )
    assert res.output == "not_found" and res.value["passages"] == [] and res.value["text"] == ""


def test_query_template_and_top_k():
    cfg = Config.model_validate({"documents": DOCS, "query": "{{ topic }}", "top_k": 1, "min_score": 0.0})
    res = run(cfg, make_input("ignored", {"topic": "returns delivery days and paypal"}), make_ctx())
    assert len(res.value["passages"]) == 1


def test_embedding_mode():
    cfg = Config.model_validate({"documents": DOCS, "mode": "embedding", "min_score": 0.3})
    res = run(cfg, make_input("when are you open?"), make_ctx())
    assert res.value["passages"][0]["id"] == "hours"


def test_result_grounds_an_llm_node():
    vars_ = {
        "faq": run(
            Config.model_validate({"documents": DOCS}), make_input("can I pay by paypal"), make_ctx()
        ).value
    }
    res = llm_run(
        LLMConfig(prompt="Answer from the FAQ.", knowledge="faq"),
        make_input("can I pay by paypal", vars_),
        make_ctx(),
    )
    assert "PayPal" in res.reply


def test_not_found_edge_in_the_engine():
    wf = workflow(
        """version: 1
id: kb
name: KB
nodes:
  - id: start
    type: start
  - id: faq
    type: knowledge
    config:
      documents:
        - {id: pay, title: Payment methods, text: "We accept Visa and PayPal."}
  - id: answer
    type: llm
    config: {prompt: "Answer from the FAQ.", knowledge: faq}
  - id: dunno
    type: reply
    config: {text: "I don't know that one."}
edges:
  - {from: start, to: faq}
  - {from: faq, to: answer}
  - {from: faq, to: dunno, when: not_found}
"""
    )
    engine = make_engine()
    assert "PayPal" in engine.run_turn(wf, "kb-1", "do you accept paypal").reply
    r = engine.run_turn(wf, "kb-2", "what is the meaning of life")
    assert r.path == ["start", "faq", "dunno"] and r.reply == "I don't know that one."


def test_outputs():
    assert NODE.all_outputs(Config.model_validate({"documents": DOCS})) == ["not_found"]


@pytest.mark.parametrize(
    "cfg",
    [
        {"documents": []},
        {"documents": [DOCS[0], DOCS[0]]},
        {"documents": [{"id": "a", "title": "A"}]},
        {"documents": DOCS, "top_k": 0},
        {"documents": DOCS, "min_score": 1.5},
        {"documents": DOCS, "mode": "semantic"},
        {"documents": [{"id": "a", "title": "A", "text": "x", "url": "u"}]},
    ],
)
def test_bad_configs_are_refused(cfg):
    with pytest.raises(ValidationError):
        Config.model_validate(cfg)
