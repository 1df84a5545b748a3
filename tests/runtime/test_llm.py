"""runtime/llm.py: the OpenAI path against a real local server, and the offline provider."""

from __future__ import annotations

import json
import socket
import threading
import time
import uuid

import pytest

from core.settings import Settings, Tier
from runtime.llm import (
    LLMError,
    OfflineProvider,
    OpenAIProvider,
    Usage,
    count_tokens,
    get_provider,
    price,
    reset_breakers,
)
from tests.fixtures.openai_server import openai_server, openai_server_module  # noqa: F401

TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "lookup_order",
            "description": "Look an order up",
            "parameters": {"type": "object", "properties": {"order_id": {"type": "string"}}},
        },
    }
]
USER = [{"role": "user", "content": "where is my order 48213"}]


def settings(**overrides) -> Settings:
    base = {
        "OPENAI_API_KEY": None,
        "OPENAI_BASE_URL": None,
        "LLM_MAX_RETRIES": 2,
        "LLM_BREAKER_FAILS": 50,
        "LLM_BREAKER_RESET_S": 30.0,
        "LLM_TIMEOUT_S": 10.0,
    }
    return Settings(_env_file=None, **{**base, **overrides})


@pytest.fixture
def server(openai_server):  # noqa: F811
    """(base URL unique to this test — so its own circuit breaker —, control)."""
    base_url, control = openai_server
    root = base_url.removesuffix("/v1")
    return f"{root}/{uuid.uuid4().hex}/v1", control


def provider(base_url: str, **overrides) -> OpenAIProvider:
    p = OpenAIProvider(settings(**overrides), api_key="sk-test", base_url=base_url)
    # Keep the retry tests short; the backoff shape itself is tenacity's.
    p.backoff_initial_s, p.backoff_jitter_s = 0.01, 0.01
    return p


# --- prices and tokens ----------------------------------------------------------------------


def test_count_tokens_is_len_over_four_rounded_up_min_one():
    assert count_tokens("") == 1
    assert count_tokens("abcd") == 1
    assert count_tokens("abcde") == 2
    assert count_tokens("x" * 400) == 100


def test_price_uses_tier_prices_per_million_tokens():
    s = settings()
    million = Usage(1_000_000, 1_000_000)
    assert price("cheap", million, s) == pytest.approx(0.15 + 0.60)
    assert price("strong", Usage(1000, 500), s) == pytest.approx((1000 * 2.5 + 500 * 10.0) / 1e6)
    # A model name or an offline model name finds its tier too; unknown costs nothing.
    assert price("gpt-4o", million, s) == price("strong", million, s)
    assert price("offline-strong", million, s) == price("strong", million, s)
    assert price("no-such-model", million, s) == 0.0
    custom = {"cheap": Tier(model="m", input_per_mtok=1.0, output_per_mtok=3.0)}
    assert price("cheap", Usage(10, 20), s, tiers=custom) == pytest.approx((10 + 60) / 1e6)


# --- OpenAI provider against the real local server ------------------------------------------


def test_chat_non_streaming(server):
    url, control = server
    r = provider(url).chat(USER, tier="strong", temperature=0.1, max_tokens=50)
    assert r.text == "You said: where is my order 48213"
    assert r.provider == "openai" and not r.offline
    assert r.model == "gpt-4o" and r.tier == "strong"
    assert r.usage == Usage(prompt_tokens=5, completion_tokens=7)  # the server's word counts
    assert r.cost_usd == pytest.approx((5 * 2.5 + 7 * 10.0) / 1e6)
    assert r.latency_ms > 0
    req = control.last
    assert req.headers["authorization"] == "Bearer sk-test"
    assert req.body["model"] == "gpt-4o"
    assert req.body["messages"] == USER
    assert req.body["temperature"] == 0.1 and req.body["max_tokens"] == 50
    assert "response_format" not in req.body and "stream" not in req.body and "tools" not in req.body


def test_streaming_tokens_arrive_in_order_with_usage(server):
    url, control = server
    control.reply = "Your order 48213 shipped yesterday and arrives Friday."
    tokens: list[str] = []
    r = provider(url).chat(USER, on_token=tokens.append)
    assert tokens == ["Your", " order", " 48213", " shipped", " yesterday", " and", " arrives", " Friday."]
    assert "".join(tokens) == r.text == control.reply
    assert r.usage == Usage(prompt_tokens=5, completion_tokens=8)
    assert r.cost_usd == pytest.approx(price("cheap", r.usage, settings()))
    assert control.last.body["stream"] is True
    assert control.last.body["stream_options"] == {"include_usage": True}


def test_missing_usage_is_estimated_from_text(server):
    url, control = server
    control.mode = "no_usage"
    r = provider(url).chat(USER)
    assert r.usage.prompt_tokens == count_tokens(USER[0]["content"])
    assert r.usage.completion_tokens == count_tokens(r.text)
    assert r.cost_usd > 0


def test_429_is_retried_after_retry_after(server):
    url, control = server
    control.script = ["429", "ok"]
    control.retry_after = "1"
    r = provider(url).chat(USER)
    assert r.text.startswith("You said:")
    assert len(control.requests) == 2
    # The retry waited for the server's Retry-After, not the (tiny) backoff.
    assert control.requests[1].at - control.requests[0].at >= 0.9


def test_500_exhausts_retries_then_llm_error(server):
    url, control = server
    control.mode = "500"
    with pytest.raises(LLMError, match=r"HTTP 500 after 3 attempts"):
        provider(url, LLM_MAX_RETRIES=2).chat(USER)
    assert len(control.requests) == 3


def test_caller_error_is_not_retried(server):
    url, control = server
    control.mode = "400"
    with pytest.raises(LLMError, match=r"HTTP 400 after 1 attempt"):
        provider(url).chat(USER)
    assert len(control.requests) == 1


def test_slow_response_times_out_within_the_call_timeout(server):
    url, control = server
    control.mode = "slow:5"
    started = time.monotonic()
    with pytest.raises(LLMError, match=r"timed out after 0\.4s"):
        provider(url).chat(USER, timeout_s=0.4)
    # The deadline covers retries too: the call gave up long before the server's 5 s.
    assert time.monotonic() - started < 3
    assert len(control.requests) == 1


def test_stream_respects_the_call_deadline(server):
    url, control = server
    control.reply = "one two three four five six seven eight nine ten"
    control.chunk_delay = 0.2
    tokens: list[str] = []
    with pytest.raises(LLMError, match="timed out"):
        provider(url).chat(USER, on_token=tokens.append, timeout_s=1.0)
    assert 0 < len(tokens) < 10
    assert len(control.requests) == 1  # tokens were emitted: a retry would repeat them


def test_circuit_opens_after_consecutive_failures_and_fails_fast(server):
    url, control = server
    control.mode = "500"
    p = provider(url, LLM_MAX_RETRIES=0, LLM_BREAKER_FAILS=3, LLM_BREAKER_RESET_S=1.0)
    for _ in range(3):
        with pytest.raises(LLMError, match="HTTP 500"):
            p.chat(USER)
    with pytest.raises(LLMError, match="circuit open"):
        p.chat(USER)
    assert len(control.requests) == 3  # the open circuit sent nothing
    # Another provider on the same base URL shares the breaker.
    with pytest.raises(LLMError, match="circuit open"):
        provider(url).chat(USER)
    assert len(control.requests) == 3
    # After the reset timeout one trial call goes through and, succeeding, closes the circuit.
    time.sleep(1.1)
    control.mode = "ok"
    assert p.chat(USER).text.startswith("You said:")
    assert p.chat(USER).text.startswith("You said:")
    assert len(control.requests) == 5


def test_caller_errors_do_not_trip_the_breaker(server):
    url, control = server
    control.mode = "400"
    p = provider(url, LLM_BREAKER_FAILS=2)
    for _ in range(4):
        with pytest.raises(LLMError, match="HTTP 400"):
            p.chat(USER)
    assert len(control.requests) == 4


def test_calls_through_one_breaker_run_concurrently(server):
    url, control = server
    control.mode = "slow:1"
    p = provider(url)
    threads = [threading.Thread(target=p.chat, args=(USER,)) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(control.requests) == 3
    assert control.max_in_flight == 3  # pybreaker's call() would have serialised them


def test_tool_call_parsed(server):
    url, control = server
    control.mode = "tool_call"
    r = provider(url).chat(USER, tools=TOOLS)
    assert r.tool_calls == [{"id": "call_1", "name": "lookup_order", "arguments": {"order_id": "48213"}}]
    assert r.text == ""
    assert control.last.body["tools"] == TOOLS


def test_tool_call_assembled_from_stream(server):
    url, control = server
    control.mode = "tool_call"
    control.tool_args = '{"order_id": "55120", "verbose": true}'
    r = provider(url).chat(USER, tools=TOOLS, on_token=lambda _: None)
    assert r.tool_calls == [
        {"id": "call_1", "name": "lookup_order", "arguments": {"order_id": "55120", "verbose": True}}
    ]


def test_tool_call_arguments_that_are_not_json_are_kept_raw(server):
    url, control = server
    control.mode = "bad_args"
    r = provider(url).chat(USER, tools=TOOLS)
    assert r.tool_calls[0]["arguments"] == {"_raw": "{not json"}


def test_json_mode_sends_response_format(server):
    url, control = server
    control.reply = '{"answer": 42}'
    r = provider(url).chat(USER, json_mode=True)
    assert json.loads(r.text) == {"answer": 42}
    assert control.last.body["response_format"] == {"type": "json_object"}


def test_classify_through_the_server(server):
    url, control = server
    labels = {"track_order": "where an order is", "complaint": "the customer is unhappy"}
    p = provider(url)
    control.reply = '{"label": "track_order", "confidence": 0.91}'
    label, confidence, resp = p.classify("where is my parcel", labels)
    assert (label, confidence) == ("track_order", 0.91)
    assert resp.provider == "openai" and resp.usage.total_tokens > 0
    body = control.last.body
    assert body["response_format"] == {"type": "json_object"}
    system = body["messages"][0]["content"]
    assert "- track_order: where an order is" in system and "- complaint: the customer is unhappy" in system
    assert body["messages"][1] == {"role": "user", "content": "where is my parcel"}
    # Robust parsing: fenced JSON, case, an unknown label, a bare label, no JSON at all.
    control.reply = '```json\n{"label": "Complaint", "confidence": 7}\n```'
    assert p.classify("bad", labels)[:2] == ("complaint", 1.0)
    control.reply = '{"label": "weather", "confidence": 0.99}'
    assert p.classify("rain?", labels)[:2] == (None, 0.0)
    control.reply = '{"label": null}'
    assert p.classify("rain?", labels)[:2] == (None, 0.0)
    control.reply = "complaint"
    assert p.classify("bad", labels)[:2] == ("complaint", 0.5)
    control.reply = "I cannot decide."
    assert p.classify("bad", labels)[:2] == (None, 0.0)


def test_extract_through_the_server(server):
    url, control = server
    fields = {"email": "the customer's email", "order_id": "the order number", "name": "full name"}
    control.reply = 'Sure: {"email": "ana@example.com", "ORDER_ID": "48213", "name": null, "other": 1}'
    found, resp = provider(url).extract("ana@example.com, order 48213", fields)
    assert found == {"email": "ana@example.com", "order_id": "48213"}
    assert resp.text.startswith("Sure:")
    body = control.last.body
    assert body["response_format"] == {"type": "json_object"}
    assert "- order_id: the order number" in body["messages"][0]["content"]


def test_cost_uses_the_providers_tiers(server):
    url, control = server
    tiers = {
        "cheap": Tier(model="tiny", input_per_mtok=1.0, output_per_mtok=2.0),
        "strong": Tier(model="huge", input_per_mtok=10.0, output_per_mtok=20.0),
    }
    p = OpenAIProvider(settings(), api_key="k", base_url=url, tiers=tiers)
    r = p.chat(USER)
    assert control.last.body["model"] == "tiny"
    assert r.cost_usd == pytest.approx((r.usage.prompt_tokens * 1.0 + r.usage.completion_tokens * 2.0) / 1e6)
    # An explicit model the deployment knows is priced as its own tier.
    r = p.chat(USER, model="huge")
    assert control.last.body["model"] == "huge" and r.tier == "cheap"
    assert r.cost_usd == pytest.approx(
        (r.usage.prompt_tokens * 10.0 + r.usage.completion_tokens * 20.0) / 1e6
    )


def test_bad_body_and_unreachable_server_are_llm_errors(server):
    url, control = server
    control.mode = "garbage"
    with pytest.raises(LLMError, match="bad response"):
        provider(url).chat(USER)
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(LLMError, match="cannot connect"):
        provider(f"http://127.0.0.1:{port}/v1", LLM_MAX_RETRIES=1).chat(USER, timeout_s=2)


def test_unknown_tier_is_an_llm_error(server):
    url, control = server
    with pytest.raises(LLMError, match="unknown model tier 'auto'"):
        provider(url).chat(USER, tier="auto")
    assert control.requests == []


def test_on_token_errors_propagate_unchanged_and_do_not_trip_the_breaker(server):
    url, _ = server

    def boom(_token: str) -> None:
        raise KeyError("subscriber gone")

    p = provider(url, LLM_BREAKER_FAILS=1)
    with pytest.raises(KeyError, match="subscriber gone"):
        p.chat(USER, on_token=boom)
    assert p.chat(USER).text.startswith("You said:")


# --- offline provider ---------------------------------------------------------------------------

KNOWLEDGE = """You are the FAQ assistant of an online shop. Answer from the knowledge only.
Knowledge:
- [Shipping] Standard shipping takes 3-5 business days. Express shipping arrives in 1-2 days.
- [Returns] You can return any item within 30 days of delivery. Refunds go to the original payment method.
- [Hours] Our support team is available Monday to Friday, 9am to 6pm CET.
"""
INTENTS = {
    "track_order": "where is my order, delivery status, tracking a package or parcel",
    "cancel_order": "cancel an order before it ships",
    "refund_return": "return an item and get a refund of money",
    "complaint": "complain about bad service or a broken product",
    "technical_support": "app or website not working, login error, crash, bug",
    "human_handoff": "talk to a human agent or a real person",
    "greeting": "hello, hi, good morning",
}
FIELDS = {
    "name": "the customer's full name",
    "email": "email address",
    "company": "the company they work for",
    "order_id": "the order number",
}


@pytest.fixture
def offline() -> OfflineProvider:
    return OfflineProvider(settings())


def test_offline_is_deterministic_and_labelled(offline):
    messages = [
        {"role": "system", "content": KNOWLEDGE},
        {"role": "user", "content": "how long is shipping?"},
    ]
    a = offline.chat(messages)
    b = OfflineProvider(settings()).chat(messages)
    assert (a.text, a.usage, a.cost_usd) == (b.text, b.usage, b.cost_usd)
    assert a.provider == "offline" and a.offline and a.model == "offline-cheap"
    assert a.event()["provider"] == "offline"
    assert a.usage.prompt_tokens > 0 and a.usage.completion_tokens > 0
    assert a.cost_usd == pytest.approx(price("cheap", a.usage, settings())) and a.cost_usd > 0
    strong = offline.chat(messages, tier="strong")
    assert strong.model == "offline-strong" and strong.cost_usd > a.cost_usd


def test_offline_answers_from_the_most_relevant_knowledge(offline):
    def ask(q: str) -> str:
        return offline.chat([{"role": "system", "content": KNOWLEDGE}, {"role": "user", "content": q}]).text

    returns = ask("Can I return the shoes I bought?")
    assert "You can return any item within 30 days of delivery." in returns
    assert "shipping" not in returns.lower()
    assert "Express shipping arrives in 1-2 days." in ask("how long does express shipping take")
    assert "Monday to Friday" in ask("When is your support team available?")
    assert ask("Do you sell gift cards?") == "I'm sorry, I don't have information about that."


def test_offline_without_knowledge_reflects_instruction_and_message(offline):
    r = offline.chat(
        [
            {"role": "system", "content": "Apologise to the customer. Escalate to a human colleague."},
            {"role": "user", "content": "My package arrived broken!"},
        ]
    )
    assert r.text == (
        "I'm sorry for the trouble. I understand you're asking about \"your package arrived broken\". "
        "A colleague will follow up with you."
    )
    plain = offline.chat([{"role": "user", "content": "where is my order 48213?"}]).text
    assert plain == 'I understand you\'re asking about "where is your order 48213".'
    assert offline.chat([{"role": "user", "content": "hi there"}]).text == "Hello! How can I help you today?"


def test_offline_json_mode_and_streaming(offline):
    r = offline.chat([{"role": "user", "content": "hello"}], json_mode=True)
    assert json.loads(r.text) == {"reply": "Hello! How can I help you today?"}
    tokens: list[str] = []
    messages = [{"role": "system", "content": KNOWLEDGE}, {"role": "user", "content": "refund?"}]
    r = offline.chat(messages, on_token=tokens.append)
    assert len(tokens) == len(r.text.split()) > 3
    assert "".join(tokens) == r.text


def test_offline_classify(offline):
    cases = {
        "where is my parcel? it's not here yet": "track_order",
        "I want my money back, please refund these shoes": "refund_return",
        "please cancel the order I placed": "cancel_order",
        "the app crashes at login": "technical_support",
        "can I talk to a real person": "human_handoff",
        "hello": "greeting",
        "your service is terrible and the product is broken": "complaint",
    }
    for text, expected in cases.items():
        label, confidence, resp = offline.classify(text, INTENTS)
        assert label == expected, text
        assert 0 < confidence <= 1
        assert json.loads(resp.text) == {"label": label, "confidence": confidence}
        assert resp.provider == "offline" and resp.usage.total_tokens > 0
    assert offline.classify("what's the weather like in Paris", INTENTS)[:2] == (None, 0.0)
    assert offline.classify("anything", {})[:2] == (None, 0.0)
    first, again = (
        offline.classify("where is my parcel", INTENTS),
        offline.classify("where is my parcel", INTENTS),
    )
    assert first[:2] == again[:2] and first[2].text == again[2].text


def test_offline_extract_heuristics(offline):
    found, resp = offline.extract(
        "Hi, my name is jane doe, email jane.doe@acme.io, I work for Acme Corp. Order #48213.", FIELDS
    )
    assert found == {
        "name": "Jane Doe",
        "email": "jane.doe@acme.io",
        "company": "Acme Corp",
        "order_id": "48213",
    }
    assert json.loads(resp.text) == found and resp.provider == "offline"
    found, _ = offline.extract("This is Dana Smith from Globex Inc. Call me back please.", FIELDS)
    assert found == {"name": "Dana Smith", "company": "Globex Inc"}
    fields = {"name": "name", "phone": "phone number", "quantity": "how many", "order_id": "order number"}
    found, _ = offline.extract("I'm Bob at Initech, +1 (555) 123-4567, I need 3 boxes", fields)
    assert found == {"name": "Bob", "phone": "+1 (555) 123-4567", "quantity": 3}
    # "I'm having trouble" is no name; nothing found -> empty.
    assert offline.extract("hello I'm having trouble at home", FIELDS)[0] == {}
    # Generic "field: value" / "field is value".
    found, _ = offline.extract("product: blue mug; colour is navy", {"product": "what", "colour": "which"})
    assert found == {"product": "blue mug", "colour": "navy"}
    # Only asked fields come back; long input still works.
    long_text = "blah " * 20_000 + "reach me at ana@example.org"
    assert offline.extract(long_text, {"email": "email"})[0] == {"email": "ana@example.org"}


def test_offline_unknown_tier(offline):
    with pytest.raises(LLMError, match="unknown model tier"):
        offline.chat(USER, tier="auto")


# --- selection ----------------------------------------------------------------------------------


def test_get_provider_selection_and_cache(server):
    url, control = server
    off = get_provider(settings())
    assert isinstance(off, OfflineProvider) and get_provider(settings()) is off
    by_url = get_provider(settings(OPENAI_BASE_URL=url))
    assert isinstance(by_url, OpenAIProvider) and by_url.base_url == url
    assert get_provider(settings(OPENAI_BASE_URL=url)) is by_url
    with_key = get_provider(settings(OPENAI_BASE_URL=url, OPENAI_API_KEY="sk-other"))
    assert isinstance(with_key, OpenAIProvider) and with_key is not by_url
    assert isinstance(get_provider(settings(OPENAI_API_KEY="sk-x")), OpenAIProvider)
    # Without a key, a local server still gets a (placeholder) bearer token.
    by_url.chat(USER)
    assert control.last.headers["authorization"] == "Bearer unused"
    with_key.chat(USER)
    assert control.last.headers["authorization"] == "Bearer sk-other"


def test_reset_breakers_forgets_open_circuits(server):
    url, control = server
    control.mode = "500"
    p = provider(url, LLM_MAX_RETRIES=0, LLM_BREAKER_FAILS=1, LLM_BREAKER_RESET_S=60)
    with pytest.raises(LLMError, match="HTTP 500"):
        p.chat(USER)
    with pytest.raises(LLMError, match="circuit open"):
        p.chat(USER)
    reset_breakers()
    control.mode = "ok"
    assert p.chat(USER).text.startswith("You said:")  # the same provider, a closed circuit
