"""The one shape every problem with a workflow is reported in (load errors and graph rules)."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Literal

Severity = Literal["error", "warning"]


@dataclass(frozen=True)
class Issue:
    code: str
    message: str
    severity: Severity = "error"
    node_id: str | None = None
    line: int | None = None  # 1-based
    col: int | None = None  # 1-based
    hint: str | None = None

    def format(self, filename: str = "<workflow>") -> str:
        """``file:line:col: CODE message (hint)``: the CLI and editor line format."""
        where = f"{filename}:{self.line or 1}:{self.col or 1}"
        text = f"{where}: {self.code} {self.message}"
        if self.node_id and f"'{self.node_id}'" not in self.message:
            text += f" [node {self.node_id}]"
        if self.hint:
            text += f" (fix: {self.hint})"
        return text

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if v is not None}


class WorkflowLoadError(Exception):
    """Raised when a file cannot become a ``Workflow`` at all; carries coded issues."""

    def __init__(self, issues: list[Issue]) -> None:
        self.issues = issues
        super().__init__("; ".join(i.format() for i in issues))


def has_errors(issues: list[Issue]) -> bool:
    return any(i.severity == "error" for i in issues)
