"""Run conversation tests (builder.conversation_tests) through the engine: CLI, publish gate, panel.

Each case is a fresh conversation on an in-memory checkpointer: its user messages are replayed
through the engine (``runtime.episodes.replay_messages``, the runtime's episode replay), and each
turn's intent, path and reply are checked against the case's expectations. The LLM is always
the offline provider, so a test gives the same answer in CI, in ``flowdesk test`` and when
publishing.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from builder.conversation_tests import (
    Case,
    CaseOutcome,
    Observed,
    TestFile,
    TurnOutcome,
    check_turn,
    load_tests,
)
from builder.schema import Workflow
from core.settings import Settings, get_settings
from runtime.engine import Engine
from runtime.episodes import replay_messages

Resolver = Callable[[str], Workflow | None]
SUFFIX = ".tests.yaml"
#: Where shipped/beside-the-file tests live: ``<dir>/<slug>.tests.yaml``, else ``<dir>/tests/``.
TESTS_SUBDIR = "tests"


def run_case(engine: Engine, wf: Workflow, case: Case, *, tenant_id: str = "local") -> CaseOutcome:
    """Replay one case as a new conversation (``runtime.episodes.replay_messages``) and check
    each turn; an exception ends the case with its error instead of stopping the run."""
    out = CaseOutcome(case.name)
    try:
        summaries = replay_messages(wf, [t.user for t in case.turns], engine=engine, tenant_id=tenant_id)
    except Exception as exc:  # a broken workflow must fail the test, not the runner
        out.error = f"the replay raised {type(exc).__name__}: {str(exc)[:300]}"
        return out
    for turn, summary in zip(case.turns, summaries, strict=True):
        seen = Observed(summary.intent, list(summary.path), summary.reply)
        mismatches = check_turn(turn.expect, seen)
        if summary.failed:
            mismatches.append(f"the turn failed (a node raised); the reply was {summary.reply[:120]!r}")
        out.turns.append(TurnOutcome(summary.seq, turn.user, seen, mismatches))
    return out


def run_tests(
    engine: Engine, wf: Workflow, tests: TestFile, *, tenant_id: str = "local"
) -> list[CaseOutcome]:
    return [run_case(engine, wf, case, tenant_id=tenant_id) for case in tests.cases]


def failures(outcomes: list[CaseOutcome]) -> list[str]:
    return [line for o in outcomes for line in o.failures()]


# ---------------------------------------------------------------- files (the CLI)


def tests_path_for(workflow_path: Path) -> Path | None:
    """``<dir>/<stem>.tests.yaml`` beside the workflow file, else ``<dir>/tests/<stem>.tests.yaml``."""
    stem = workflow_path.name.removesuffix(".yaml").removesuffix(".yml")
    for candidate in (
        workflow_path.parent / f"{stem}{SUFFIX}",
        workflow_path.parent / TESTS_SUBDIR / f"{stem}{SUFFIX}",
    ):
        if candidate.is_file():
            return candidate
    return None


def read_tests(path: Path) -> TestFile:
    """Raises ``WorkflowLoadError`` (file:line:col issues) or ``OSError``."""
    return load_tests(path.read_bytes(), filename=str(path))


def offline_engine(
    *,
    settings: Settings | None = None,
    resolve: Resolver | None = None,
    config_values: dict[str, str] | None = None,
    http: Any = None,
    router: Any = None,
) -> Engine:
    """An engine on the offline LLM (deterministic answers) with an in-memory checkpointer."""
    from runtime.llm import OfflineProvider

    settings = settings or get_settings()
    return Engine(
        settings=settings,
        llm=OfflineProvider(settings),
        resolve=resolve,
        config_values=config_values,
        http=http,
        router=router,
    )


# ---------------------------------------------------------------- stored workflows (publish gate)

_router: Any = None
_router_lock = threading.Lock()


def _shared_router(settings: Settings) -> Any:
    """One router per process: its classifier heads are cached per intents and cost to build."""
    global _router
    with _router_lock:
        if _router is None:
            from runtime.router import Router

            _router = Router(settings=settings)
        return _router


def run_stored(wf: Workflow, tests_yaml: str, resolve: Resolver, *, tenant_id: str) -> list[CaseOutcome]:
    """The stored tests of a tenant's workflow, subflows resolved by ``resolve`` (the drafts).

    A new engine per run: its in-memory checkpointer (the test conversations) goes with it.
    """
    tests = load_tests(tests_yaml, filename=f"{wf.id}{SUFFIX}")
    settings = get_settings()
    engine = offline_engine(settings=settings, resolve=resolve, router=_shared_router(settings))
    return run_tests(engine, wf, tests, tenant_id=tenant_id)
