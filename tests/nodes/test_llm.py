"""``llm``: messages it builds, streaming, tiers, knowledge grounding, JSON output, failures —
with the real offline provider."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from core.settings import get_settings
from nodes.llm import NODE, Config, build_messages, run
from runtime.llm import LLMError, OfflineProvider
from tests.nodes import make_ctx, make_engine, make_input, workflow

PASSAGES = {
    "passages": [
        {
            "id": "ship",
            "title": "Shipping times",
            "text": "Standard shipping takes 3-5 business days.",
            "score": 0.9,
        },
        {"id": "ret", "title": "Returns", "text": "You can return any item within 30 days.", "score": 0.4},
    ]
}


def history(n: int) -> list[dict]:
    return [
        {"id": str(i), "role": "user" if i % 2 == 0 else "assistant", "content": f"m{i}"} for i in range(n)
    ]


def test_reply_is_streamed_and_metered():
    tokens: list[str] = []
    ctx = make_ctx(on_token=tokens.append)
    res = run(Config(prompt="You are a helpful support agent."), make_input("where is my parcel?"), ctx)
    assert res.reply and res.reply == res.value["text"] and "".join(tokens) == res.reply
    assert res.value["model"] == "offline-cheap" and res.value["tier"] == "cheap"
    assert res.value["usage"]["prompt_tokens"] > 0 and res.value["usage"]["completion_tokens"] > 0
    (event,) = ctx.events.of_type("llm_call")
    assert event.payload["provider"] == "offline" and event.payload["node"] == "n"
    assert event.payload["cost_usd"] == res.value["usage"]["cost_usd"]


def test_respond_false_says_nothing_and_streams_nothing():
    tokens: list[str] = []
    res = run(
        Config(prompt="Summarise.", respond=False),
        make_input("hello there"),
        make_ctx(on_token=tokens.append),
    )
    assert res.reply is None and tokens == [] and res.value["text"]


@pytest.mark.parametrize(
    "tier, route, expected",
    [
        ("auto", {"tier": "strong"}, "strong"),
        ("auto", None, "cheap"),
        ("cheap", {"tier": "strong"}, "cheap"),
        ("strong", None, "strong"),
        ("auto", {"tier": "bogus"}, "cheap"),
    ],
)
def test_tier(tier, route, expected):
    res = run(
        Config(prompt="Answer.", tier=tier), make_input("hi", {"route": route} if route else {}), make_ctx()
    )
    assert res.value["tier"] == expected and res.value["model"] == f"offline-{expected}"


def test_prompt_is_rendered_and_history_is_bounded():
    cfg = Config(prompt="Customer {{ name }} asks about order {{ order_id }}.", history=3)
    inp = make_input("m5", {"name": "Ana", "order_id": "48213"}, messages=history(6))
    msgs = build_messages(cfg, inp)
    assert msgs[0] == {"role": "system", "content": "Customer Ana asks about order 48213."}
    assert [m["content"] for m in msgs[1:]] == ["m3", "m4", "m5"]


def test_history_zero_still_sends_the_message():
    msgs = build_messages(Config(prompt="x", history=0), make_input("the question", messages=history(6)))
    assert msgs[1:] == [{"role": "user", "content": "the question"}]


def test_knowledge_is_appended_in_the_grounding_convention():
    cfg = Config(prompt="Answer from the FAQ only.", knowledge="faq")
    system = build_messages(cfg, make_input("q", {"faq": PASSAGES}))[0]["content"]
    assert system.endswith(
        "Knowledge:\n- [Shipping times] Standard shipping takes 3-5 business days.\n"
        "- [Returns] You can return any item within 30 days."
    )
    missing = build_messages(cfg, make_input("q", {}))[0]["content"]
    assert "Knowledge:\n- (no relevant passages were found)" in missing


def test_offline_answer_is_grounded_in_the_knowledge():
    res = run(
        Config(prompt="Answer from the FAQ.", knowledge="{{ faq }}"),
        make_input("how long does shipping take?", {"faq": PASSAGES}),
        make_ctx(),
    )
    assert "3-5 business days" in res.reply
    assert NODE.reads(Config(prompt="{{ a }}", knowledge="faq")) == ["a", "faq"]


def test_json_output_is_parsed():
    res = run(Config(prompt="Reply as JSON.", json_output=True), make_input("hello"), make_ctx())
    assert isinstance(res.value["json"], dict) and res.reply == res.value["json"]["reply"]


def test_provider_failure_raises():
    only_cheap = OfflineProvider(tiers={"cheap": get_settings().TIERS["cheap"]})
    with pytest.raises(LLMError):
        run(Config(prompt="x", tier="strong"), make_input("hi"), make_ctx(llm=only_cheap))
    assert NODE.can_fail and NODE.all_outputs(Config(prompt="x")) == ["error"]


def test_failure_takes_the_error_edge_in_the_engine():
    wf = workflow("""version: 1
id: llm_fail
name: LLM failure
nodes:
  - id: start
    type: start
  - id: answer
    type: llm
    config: {prompt: "Help.", tier: strong}
  - id: sorry
    type: reply
    config: {text: "Sorry, try again later."}
edges:
  - {from: start, to: answer}
  - {from: answer, to: sorry, when: error}
""")
    engine = make_engine(llm=OfflineProvider(tiers={"cheap": get_settings().TIERS["cheap"]}))
    r = engine.run_turn(wf, "llm-fail-1", "hello")
    assert r.path == ["start", "answer", "sorry"] and r.reply == "Sorry, try again later."


@pytest.mark.parametrize(
    "cfg",
    [
        {},
        {"prompt": ""},
        {"prompt": "x", "tier": "medium"},
        {"prompt": "x", "history": -1},
        {"prompt": "x", "temperature": 3},
        {"prompt": "x", "max_tokens": 0},
        {"prompt": "x", "knowledge": "a b"},
        {"prompt": "x", "knowledge": "{{ a }} {{ b }}"},
    ],
)
def test_bad_configs_are_refused(cfg):
    with pytest.raises(ValidationError):
        Config.model_validate(cfg)
