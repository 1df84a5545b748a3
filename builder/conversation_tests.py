"""Conversation tests: the YAML format, loading (safe, line-numbered), canonical dump, checking.

A file names its workflow and holds cases; each case is a fresh conversation, one turn per
user message, each turn with optional expectations::

    version: 1
    workflow: customer_support
    cases:
      - name: tracks an order
        turns:
          - user: where is my order 48213
            expect:
              intent: track_order
              path_includes: [understand, track_order/lookup]
              reply_contains: [shipped]

* ``intent``: the router's decision for the turn (``none`` when no classify node ran);
* ``path_includes``: node labels (subflow nodes as ``slug/node``) that must run, in this order;
* ``reply_contains``: fragments the reply must contain (case-insensitive).

Pure: text in, data out; running the cases is ``runtime.convtest``'s job. Loading goes through
``builder.yaml_io.parse_yaml`` (no tags, no aliases, bounded size and depth), so a hostile file
gets the same coded ``file:line:col`` issues as a hostile workflow.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated, Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError, field_validator

from builder.issues import Issue, WorkflowLoadError
from builder.yaml_io import parse_yaml

FORMAT_VERSION = 1
MAX_CASES = 200
MAX_TURNS = 50
#: Publishing replays every turn synchronously: this keeps that bounded (a few seconds offline).
MAX_TOTAL_TURNS = 500
#: The chat API's limit on one message (runtime.service.MAX_TEXT_CHARS).
MAX_USER_CHARS = 4000
MAX_FRAGMENTS = 20
MAX_FRAGMENT_CHARS = 500
NO_INTENT = "none"

Text = Annotated[str, StringConstraints(min_length=1, max_length=MAX_FRAGMENT_CHARS)]
Label = Annotated[str, StringConstraints(min_length=1, max_length=300)]


class Expect(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    intent: Annotated[str, StringConstraints(min_length=1, max_length=100)] | None = None
    path_includes: list[Label] = Field(default_factory=list, max_length=100)
    reply_contains: list[Text] = Field(default_factory=list, max_length=MAX_FRAGMENTS)

    @field_validator("reply_contains", mode="before")
    @classmethod
    def _one_or_many(cls, v: Any) -> Any:
        return [v] if isinstance(v, str) else v

    def is_empty(self) -> bool:
        return self.intent is None and not self.path_includes and not self.reply_contains


class Turn(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    user: Annotated[str, StringConstraints(min_length=1, max_length=MAX_USER_CHARS)]
    expect: Expect = Field(default_factory=Expect)

    @field_validator("user")
    @classmethod
    def _not_blank(cls, v: str) -> str:
        if not v.strip():
            raise ValueError("the user message is blank")
        return v


class Case(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: Annotated[str, StringConstraints(min_length=1, max_length=200, strip_whitespace=True)]
    turns: list[Turn] = Field(min_length=1, max_length=MAX_TURNS)


class TestFile(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    __test__ = False  # not a pytest class

    version: int = FORMAT_VERSION
    workflow: Annotated[str, StringConstraints(min_length=1, max_length=100)]
    cases: list[Case] = Field(default_factory=list, max_length=MAX_CASES)

    @field_validator("version")
    @classmethod
    def _supported(cls, v: int) -> int:
        if v != FORMAT_VERSION:
            raise ValueError(f"format version {v} is not supported (this flowdesk reads {FORMAT_VERSION})")
        return v

    @field_validator("cases")
    @classmethod
    def _unique_names(cls, v: list[Case]) -> list[Case]:
        names = [c.name for c in v]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"case names must be unique; repeated: {', '.join(dupes)}")
        total = sum(len(c.turns) for c in v)
        if total > MAX_TOTAL_TURNS:
            raise ValueError(f"{total} turns in all; a tests file holds at most {MAX_TOTAL_TURNS}")
        return v


# ---------------------------------------------------------------- loading


def load_tests(text: str | bytes, filename: str = "<tests>") -> TestFile:
    """Text -> ``TestFile``; raises ``WorkflowLoadError`` with ``file:line:col`` issues."""
    data, source_map = parse_yaml(text, filename)
    if not isinstance(data, dict):
        raise WorkflowLoadError(
            [
                Issue(
                    "TESTS_NOT_MAPPING",
                    "a tests file is a mapping (version:, workflow:, cases:)",
                    line=1,
                    col=1,
                )
            ]
        )
    try:
        return TestFile.model_validate(data)
    except ValidationError as e:
        issues = []
        for err in e.errors():
            loc = tuple(p for p in err["loc"] if isinstance(p, str | int))
            line, col = _position(source_map, loc)
            where = ".".join(str(p) for p in loc) or "file"
            issues.append(Issue("TESTS_INVALID", f"{where}: {err['msg']}", line=line, col=col))
        raise WorkflowLoadError(issues) from None


def _position(source_map: dict[Any, tuple[int, int]], path: tuple[str | int, ...]) -> tuple[int, int]:
    for i in range(len(path), -1, -1):
        if path[:i] in source_map:
            return source_map[path[:i]]
    return (1, 1)


# ---------------------------------------------------------------- dumping


class _Flow(list[Any]):
    """A list written on one line: ``[start, understand]``."""


class _Dumper(yaml.SafeDumper):
    def increase_indent(self, flow: bool = False, indentless: bool = False) -> None:
        super().increase_indent(flow, False)  # list items indented under their key


def _str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    if "\n" in value and all(line == line.rstrip() for line in value.split("\n")):
        return dumper.represent_scalar("tag:yaml.org,2002:str", value, style="|")
    if not value.isprintable():
        return dumper.represent_scalar("tag:yaml.org,2002:str", value, style='"')
    return dumper.represent_scalar("tag:yaml.org,2002:str", value)


_Dumper.add_representer(str, _str)
_Dumper.add_representer(_Flow, lambda d, v: d.represent_sequence("tag:yaml.org,2002:seq", v, flow_style=True))


def to_data(tests: TestFile) -> dict[str, Any]:
    """Canonical plain data: fixed key order, empty expectations left out."""
    cases = []
    for case in tests.cases:
        turns = []
        for t in case.turns:
            item: dict[str, Any] = {"user": t.user}
            exp: dict[str, Any] = {}
            if t.expect.intent is not None:
                exp["intent"] = t.expect.intent
            if t.expect.path_includes:
                exp["path_includes"] = _Flow(t.expect.path_includes)
            if t.expect.reply_contains:
                exp["reply_contains"] = _Flow(t.expect.reply_contains)
            if exp:
                item["expect"] = exp
            turns.append(item)
        cases.append({"name": case.name, "turns": turns})
    return {"version": tests.version, "workflow": tests.workflow, "cases": cases}


def dump_tests(tests: TestFile) -> str:
    """The canonical text: ``dump_tests(load_tests(t)) == t`` for canonical files."""
    text: str = yaml.dump(
        to_data(tests),
        Dumper=_Dumper,
        sort_keys=False,
        allow_unicode=True,
        default_flow_style=False,
        width=10_000,
        indent=2,
    )
    return text


def add_case(tests: TestFile, case: Case) -> TestFile:
    """A copy with ``case`` appended; a case with the same name is replaced in place."""
    kept = [c for c in tests.cases if c.name != case.name]
    at = next((i for i, c in enumerate(tests.cases) if c.name == case.name), len(kept))
    kept.insert(at, case)
    return TestFile.model_validate({**tests.model_dump(), "cases": [c.model_dump() for c in kept]})


def empty(workflow: str) -> TestFile:
    return TestFile(workflow=workflow)


# ---------------------------------------------------------------- checking a turn


@dataclass(frozen=True)
class Observed:
    """What one turn did, as far as the expectations look."""

    intent: str | None
    path: list[str]
    reply: str


@dataclass
class TurnOutcome:
    index: int
    user: str
    observed: Observed
    mismatches: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return not self.mismatches


@dataclass
class CaseOutcome:
    name: str
    turns: list[TurnOutcome] = field(default_factory=list)
    #: The case could not run at all (the workflow failed to load, a turn raised...).
    error: str | None = None

    @property
    def passed(self) -> bool:
        return self.error is None and all(t.passed for t in self.turns)

    def failures(self) -> list[str]:
        """One line per failed turn: ``case / turn N: mismatch; mismatch``."""
        if self.error is not None:
            return [f"{self.name}: {self.error}"]
        return [
            f"{self.name} / turn {t.index}: {'; '.join(t.mismatches)}" for t in self.turns if not t.passed
        ]


def check_turn(expect: Expect, seen: Observed) -> list[str]:
    """The mismatches between an expectation and what the turn did (empty: it passed)."""
    out = []
    if expect.intent is not None and expect.intent != (seen.intent or NO_INTENT):
        out.append(f"intent: expected {expect.intent!r}, got {seen.intent or NO_INTENT!r}")
    if expect.path_includes:
        missing = _missing_in_order(expect.path_includes, seen.path)
        if missing is not None:
            out.append(
                f"path: expected {missing!r} (in order {' -> '.join(expect.path_includes)}), "
                f"got {' -> '.join(seen.path) or '(empty)'}"
            )
    reply = seen.reply.casefold()
    for fragment in expect.reply_contains:
        if fragment.casefold() not in reply:
            out.append(f"reply: expected to contain {fragment!r}, got {_short(seen.reply)!r}")
    return out


def _missing_in_order(expected: list[str], path: list[str]) -> str | None:
    """The first expected label not found after the previous one's place, or None."""
    at = 0
    for label in expected:
        try:
            at = path.index(label, at) + 1
        except ValueError:
            return label
    return None


def _short(text: str, limit: int = 160) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


# ---------------------------------------------------------------- saving a chat as a case


def case_from_turns(name: str, turns: list[dict[str, Any]], *, max_fragment: int = 60) -> Case:
    """A case from turns seen in the chat panel (``{user, intent, path, reply}`` dicts).

    The reply fragment is the reply's first line, cut at ``max_fragment`` characters on a word
    boundary: stable enough to catch a changed answer, short enough to survive rewording elsewhere.
    """
    out = []
    for t in turns:
        reply = str(t.get("reply") or "")
        first = reply.strip().split("\n", 1)[0].strip()
        if len(first) > max_fragment:
            first = first[:max_fragment].rsplit(" ", 1)[0] or first[:max_fragment]
        expect: dict[str, Any] = {"path_includes": [str(p) for p in t.get("path") or []]}
        if t.get("intent"):
            expect["intent"] = str(t["intent"])
        if first:
            expect["reply_contains"] = [first]
        out.append({"user": str(t["user"]), "expect": expect})
    return Case.model_validate({"name": name, "turns": out})
