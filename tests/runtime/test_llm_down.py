"""When the LLM endpoint is down, a turn takes the workflow's fallback path within its timeout and
tells the user; once the endpoint's circuit is open, the next turn fails fast without calling it.

Real turns through ``runtime.engine.Engine`` and the shipped workflows, with an ``OpenAIProvider``
pointed at a closed port (connection refused) or at the local OpenAI-compatible test server
(``tests/fixtures/openai_server.py``) answering 500s or hanging. Assertions are on events, replies,
the requests the server saw and the breaker's state, never on wall-clock time.
"""

from __future__ import annotations

import socket
import threading
import uuid
from typing import Any

import pytest

from builder.yaml_io import load
from core.settings import ROOT, Settings
from runtime.cli import FileResolver
from runtime.engine import APOLOGY, Engine, TurnResult
from runtime.llm import OpenAIProvider, breaker_for
from runtime.router import Router
from tests.fixtures.openai_server import openai_server, openai_server_module  # noqa: F401

WORKFLOWS = ROOT / "workflows"
#: A watchdog, not a measurement: a turn that has not finished by then is hung.
HANG_S = 60.0
FAQ_QUESTION = "How long does shipping take and what does it cost?"


def settings(**overrides: Any) -> Settings:
    base = {
        "OPENAI_API_KEY": None,
        "OPENAI_BASE_URL": None,
        "LLM_MAX_RETRIES": 2,
        # One turn's attempts (1 + 2 retries) open the circuit.
        "LLM_BREAKER_FAILS": 3,
        "LLM_BREAKER_RESET_S": 300.0,
        "LLM_TIMEOUT_S": 10.0,
        "ROUTER_EMBEDDER": "tfidf",
    }
    return Settings(_env_file=None, **{**base, **overrides})


def engine_for(base_url: str, s: Settings) -> Engine:
    llm = OpenAIProvider(s, api_key="sk-test", base_url=base_url)
    llm.backoff_initial_s, llm.backoff_jitter_s = 0.01, 0.01  # the backoff shape is tenacity's
    return Engine(settings=s, llm=llm, router=Router(settings=s), resolve=FileResolver([WORKFLOWS]))


def workflow(slug: str) -> Any:
    return load((WORKFLOWS / f"{slug}.yaml").read_text()).workflow


def turn(engine: Engine, slug: str, cid: str, text: str) -> TurnResult:
    """One turn, in a thread with a watchdog so a hang fails the test instead of stalling it."""
    out: list[TurnResult | BaseException] = []

    def run() -> None:
        try:
            out.append(engine.run_turn(workflow(slug), cid, text))
        except BaseException as exc:
            out.append(exc)

    t = threading.Thread(target=run, daemon=True)
    t.start()
    t.join(HANG_S)
    assert not t.is_alive(), f"the turn is still running after {HANG_S}s: it hangs"
    [result] = out
    if isinstance(result, BaseException):
        raise result
    return result


def node_errors(result: TurnResult, node: str) -> list[str]:
    """Messages of the node's ``node_error`` events (events are flat dicts: payload + type/seq)."""
    return [e["message"] for e in result.events if e["type"] == "node_error" and e.get("node") == node]


def closed_port_url() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # nothing listens here once the socket is closed
    return f"http://127.0.0.1:{port}/v1"


@pytest.fixture
def server(openai_server):  # noqa: F811
    """(a base URL of its own, so its own breaker, on the shared test server, control)."""
    base_url, control = openai_server
    return f"{base_url.removesuffix('/v1')}/{uuid.uuid4().hex}/v1", control


def assert_faq_fallback(result: TurnResult) -> None:
    assert result.error is None  # the workflow handled it: not the engine's generic apology
    assert result.path == ["start", "faq", "answer", "fallback"]
    assert result.reply.startswith("Our assistant is unavailable right now, so here is what our FAQ says:")
    assert "Shipping times and costs" in result.reply and APOLOGY not in result.reply
    assert not any(e["type"] == "llm_call" for e in result.events)


def test_endpoint_down_takes_the_error_edge_then_the_open_circuit_fails_fast() -> None:
    url = closed_port_url()
    engine, cid = engine_for(url, settings()), uuid.uuid4().hex
    breaker = breaker_for(url)

    first = turn(engine, "faq_handling", cid, FAQ_QUESTION)
    assert_faq_fallback(first)
    [error] = node_errors(first, "answer")
    assert "cannot connect (after 3 attempts)" in error
    assert breaker.current_state == "open"

    second = turn(engine, "faq_handling", cid, FAQ_QUESTION)
    assert_faq_fallback(second)
    [error] = node_errors(second, "answer")
    assert error.startswith(f"circuit open for {url}")
    assert breaker.current_state == "open"


def test_server_errors_open_the_circuit_and_the_next_turn_sends_nothing(server) -> None:
    url, control = server
    control.mode = "500"
    engine, cid = engine_for(url, settings()), uuid.uuid4().hex

    first = turn(engine, "faq_handling", cid, FAQ_QUESTION)
    assert_faq_fallback(first)
    assert "HTTP 500 after 3 attempts" in node_errors(first, "answer")[0]
    assert len(control.requests) == 3
    assert breaker_for(url).current_state == "open"

    second = turn(engine, "faq_handling", cid, FAQ_QUESTION)
    assert_faq_fallback(second)
    assert "circuit open" in node_errors(second, "answer")[0]
    assert len(control.requests) == 3  # failed fast: the endpoint was not called again


def test_a_hanging_endpoint_is_cut_at_the_timeout_then_skipped(server) -> None:
    url, control = server
    control.mode = "slow:30"  # answers long after the call's deadline (it stops when we hang up)
    s = settings(LLM_TIMEOUT_S=1.0, LLM_BREAKER_FAILS=1)
    engine, cid = engine_for(url, s), uuid.uuid4().hex

    first = turn(engine, "faq_handling", cid, FAQ_QUESTION)
    assert_faq_fallback(first)
    assert "timed out after 1s" in node_errors(first, "answer")[0]
    assert len(control.requests) == 1  # the deadline covers retries: no time was left for one
    assert breaker_for(url).current_state == "open"

    second = turn(engine, "faq_handling", cid, FAQ_QUESTION)
    assert_faq_fallback(second)
    assert "circuit open" in node_errors(second, "answer")[0]
    assert len(control.requests) == 1


def test_the_circuit_closes_again_when_the_endpoint_recovers(server) -> None:
    url, control = server
    control.mode = "500"
    engine, cid = engine_for(url, settings(LLM_BREAKER_FAILS=1, LLM_MAX_RETRIES=0)), uuid.uuid4().hex
    assert_faq_fallback(turn(engine, "faq_handling", cid, FAQ_QUESTION))
    breaker = breaker_for(url)
    assert breaker.current_state == "open"
    # The reset timeout passes (moved back instead of slept through), and the endpoint is back.
    storage = breaker._state_storage
    storage.opened_at = storage.opened_at.replace(year=2000)
    control.mode = "ok"
    third = turn(engine, "faq_handling", cid, FAQ_QUESTION)
    assert third.path == ["start", "faq", "answer"] and third.error is None
    assert breaker.current_state == "closed"


def test_technical_support_hands_over_and_says_why(server) -> None:
    url, control = server
    control.mode = "500"
    result = turn(
        engine_for(url, settings()), "technical_support", uuid.uuid4().hex, "my app crashes on start"
    )
    assert result.error is None
    assert result.path[-2:] == ["walk", "llm_down"]
    assert result.reply == "I'm having trouble right now, so I'm handing you to a technician."
    [handoff] = result.handoffs
    assert handoff.priority == "high" and handoff.queue == "technical"


def test_entry_workflow_routes_without_the_judge_and_falls_back(server) -> None:
    url, control = server
    control.mode = "500"
    result = turn(engine_for(url, settings()), "customer_support", uuid.uuid4().hex, FAQ_QUESTION)
    assert result.error is None and result.intent == "faq"
    assert result.route is not None and result.route["layer"] in ("rules", "classifier", "fallback")
    assert "Our assistant is unavailable right now" in result.reply
    assert breaker_for(url).current_state == "open"


def test_slot_filling_asks_the_user_instead_of_failing(server) -> None:
    url, control = server
    control.mode = "500"
    text = "I'd like a demo of your product, you can reach me at jane@acme.io"
    result = turn(engine_for(url, settings()), "lead_capture", uuid.uuid4().hex, text)
    assert result.error is None and result.waiting
    assert result.reply == "Happy to connect you with our sales team. What's your name?"
    assert any(e["type"] == "llm_unavailable" for e in result.events)
