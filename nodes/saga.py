"""``saga``: several API calls that succeed together or are undone together. Steps run in
order; when one fails, the compensations of the steps already done run in reverse order
(release the stock, refund the payment), so the customer is never left charged for nothing.

Outputs: the default edge when every step succeeded; ``compensated`` when a step failed and
every completed step was undone; ``error`` when a compensation failed too (a person must look).

Each step's result has an ``http_request`` node's shape (``status``, ``body``, ``ok``, plus the
``idempotency_key`` sent). Later steps read earlier ones as ``{{ steps.<step>.body.<field> }}``;
nodes after the saga read ``{{ <node>.steps.<step>.body.<field> }}``, the failure as
``<node>.failed.step`` / ``.status`` / ``.code`` / ``.message`` / ``.unknown`` (true when the
call got no answer, so it may have taken effect: a failed step is never compensated itself,
and a flow should say so rather than claim nothing happened), the compensations run as
``<node>.compensations.<step>`` and the outcome as ``<node>.status`` (ok, compensated, error).

Every call carries an ``Idempotency-Key`` derived from the conversation, turn, node, step,
``do``/``undo`` and the request itself, so a turn re-run after a worker crash replays the
API's stored answers instead of reserving or charging twice. Compensations get their full
``timeout_s`` even when the node's own deadline has passed.
"""

from __future__ import annotations

import time
from dataclasses import replace
from typing import Any, Literal

import httpx
from pydantic import Field, field_validator, model_validator

from builder.template import strings_in, variables
from nodes import http_request
from nodes.base import NodeConfig, NodeInput, NodeResult, NodeType
from runtime.context import RunContext
from runtime.http import ResponseTooLarge

#: The name earlier steps' results go by inside the saga's own templates.
STEPS = "steps"
COMPENSATED = "compensated"
ERROR = "error"
#: The request may have reached the API but no answer was read: whether it took effect is unknown.
UNKNOWN_OUTCOME = (
    httpx.ReadTimeout,
    httpx.WriteTimeout,
    httpx.ReadError,
    httpx.WriteError,
    httpx.RemoteProtocolError,
    ResponseTooLarge,
)


class Action(http_request.Config):
    """One HTTP call of a saga: an ``http_request`` config (POST by default)."""

    method: Literal["GET", "POST", "PUT", "PATCH", "DELETE"] = Field(
        default="POST", description="HTTP method."
    )

    @field_validator("idempotency")
    @classmethod
    def _always_keyed(cls, v: bool) -> bool:
        if not v:
            raise ValueError("saga calls always carry an Idempotency-Key (it is what makes a re-run safe)")
        return v


class Step(NodeConfig):
    id: str = Field(
        pattern=r"^[a-z][a-z0-9_]{0,39}$",
        description="Step name (lower case): later steps read its result as steps.<id>.",
    )
    action: Action = Field(description="The call that does the step.")
    compensate: Action | None = Field(
        default=None,
        description="The call that undoes the step if a later step fails (none: nothing to undo).",
    )


def _step_refs(action: Action | None) -> set[str]:
    if action is None:
        return set()
    paths = (p for s in strings_in(action.model_dump(mode="json")) for p in variables(s))
    return {p.split(".")[1] if "." in p else "" for p in paths if p.split(".", 1)[0] == STEPS}


class Config(NodeConfig):
    steps: list[Step] = Field(
        min_length=1,
        max_length=10,
        description="The steps, in order; each an action and optionally its compensation.",
    )

    @model_validator(mode="after")
    def _steps_ok(self) -> Config:
        seen: list[str] = []
        for step in self.steps:
            if step.id in seen:
                raise ValueError(f"step id {step.id!r} is used twice")
            for where, action, known in (
                ("action", step.action, seen),
                ("compensate", step.compensate, [*seen, step.id]),
            ):
                for ref in sorted(_step_refs(action) - set(known)):
                    raise ValueError(
                        f"step {step.id!r} {where} reads steps.{ref or '?'}, which has not run by then "
                        f"(it can read: {', '.join(known) or 'no step yet'})"
                    )
            seen.append(step.id)
        return self


def _reads(cfg: Config) -> list[str]:
    """Template paths read from the workflow: ``steps.*`` is the saga's own, checked above."""
    paths = (p for s in strings_in(cfg.model_dump(mode="json")) for p in variables(s))
    return [p for p in paths if p.split(".", 1)[0] != STEPS]


def _failure(exc: Exception) -> dict[str, Any]:
    """What went wrong, with the API's own message when it sent one (it is meant for people)."""
    status = exc.status if isinstance(exc, http_request.UnexpectedStatus) else None
    body = exc.body if isinstance(exc, http_request.UnexpectedStatus) else None
    err = body.get("error") if isinstance(body, dict) else None
    err = err if isinstance(err, dict) else {}
    return {
        "status": status,
        "code": str(err.get("code") or type(exc).__name__),
        "message": str(err.get("message") or exc)[:500],
        "unknown": isinstance(exc, UNKNOWN_OUTCOME),
        "body": body,
    }


def _ms(started: float) -> float:
    return round((time.perf_counter() - started) * 1000, 3)


def run(cfg: Config, inp: NodeInput, ctx: RunContext) -> NodeResult:
    results: dict[str, Any] = {}
    value: dict[str, Any] = {
        "status": "ok",
        STEPS: results,
        "failed": None,
        "compensations": {},
        COMPENSATED: [],
        "uncompensated": [],
    }
    done: list[Step] = []
    for step in cfg.steps:
        started = time.perf_counter()
        try:
            res = http_request.call(step.action, {**inp.vars, STEPS: results}, ctx, key_scope=(step.id, "do"))
        except Exception as exc:  # any failure, even a bad reference: undo what was done
            fail = _failure(exc)
            results[step.id] = {"status": fail["status"], "body": fail["body"], "ok": False}
            value["failed"] = {"step": step.id, **{k: v for k, v in fail.items() if k != "body"}}
            ctx.emit("saga_step", step=step.id, status="failed", http_status=fail["status"],
                     code=fail["code"], unknown=fail["unknown"], ms=_ms(started))  # fmt: skip
            break
        results[step.id] = res
        done.append(step)
        ctx.emit("saga_step", step=step.id, status="ok", http_status=res["status"], ms=_ms(started),
                 idempotency_key=res["idempotency_key"])  # fmt: skip
    else:
        return NodeResult(value=value)

    undo_ctx = replace(ctx, deadline=None)  # same events, turn and node; no deadline
    for step in reversed(done):
        if step.compensate is None:
            continue
        started = time.perf_counter()
        try:
            res = http_request.call(
                step.compensate,
                {**inp.vars, STEPS: results},
                undo_ctx,
                key_scope=(step.id, "undo"),
                bounded=False,
            )
        except Exception as exc:  # keep undoing the others; the error output tells a person
            fail = _failure(exc)
            value["compensations"][step.id] = {"status": fail["status"], "body": fail["body"], "ok": False}
            value["uncompensated"].append(step.id)
            ctx.emit(COMPENSATED, step=step.id, status="failed", http_status=fail["status"],
                     code=fail["code"], ms=_ms(started))  # fmt: skip
            continue
        value["compensations"][step.id] = res
        value[COMPENSATED].append(step.id)
        ctx.emit(COMPENSATED, step=step.id, status="ok", http_status=res["status"], ms=_ms(started),
                 idempotency_key=res["idempotency_key"])  # fmt: skip
    outcome = ERROR if value["uncompensated"] else COMPENSATED
    value["status"] = outcome
    failed = value["failed"]
    ctx.emit(
        "saga_failed",
        step=failed["step"],
        code=failed["code"],
        unknown=failed["unknown"],
        outcome=outcome,
        compensated=value[COMPENSATED],
        uncompensated=value["uncompensated"],
    )
    return NodeResult(value=value, output=outcome)


NODE = NodeType(
    type="saga",
    title="Saga (steps with compensations)",
    group="Tools",
    icon="list-checks",
    config=Config,
    run=run,
    description=__doc__.split("\n\n")[0] if __doc__ else "",
    outputs=lambda cfg: [COMPENSATED],
    can_fail=True,
    reads=_reads,
)
