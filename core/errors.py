"""One error type for services, mapped 1:1 to the API's ``{"error": {"code", "message"}}`` bodies."""

from __future__ import annotations

from typing import Any


class ServiceError(Exception):
    status = 400

    def __init__(self, code: str, message: str, *, status: int | None = None, **details: Any) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        if status is not None:
            self.status = status
        self.details = details

    def body(self) -> dict[str, Any]:
        err: dict[str, Any] = {"code": self.code, "message": self.message}
        err.update({k: v for k, v in self.details.items() if v is not None})
        return {"error": err}


class NotFound(ServiceError):
    status = 404


class Conflict(ServiceError):
    status = 409


class Forbidden(ServiceError):
    status = 403


class Unauthorized(ServiceError):
    status = 401


class Invalid(ServiceError):
    status = 422


class PlanLimit(ServiceError):
    status = 402


class TooLarge(ServiceError):
    status = 413
