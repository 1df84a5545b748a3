"""Load and dump workflow files: safe, bounded, line-numbered, canonical.

* Loading never constructs anything but plain scalars, lists and dicts: the YAML is
  composed into a node tree (libyaml when present) and walked here, so unknown tags
  (``!!python/object``...), aliases (billion laughs), duplicate keys and absurd depth are
  refused with a coded issue pointing at file:line:col before any value is built.
* ``dump`` writes the canonical form: fixed key order for the file and each node, one
  flow-style line per edge and per layout entry (moving a node is a one-line diff),
  block style everywhere else, literal blocks for multi-line text, no line folding.
  ``dump(load(text)) == text`` for canonical files and ``load(dump(w)) == w`` always.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import yaml
from pydantic import ValidationError

from builder.issues import Issue, WorkflowLoadError
from builder.schema import CURRENT_VERSION, Workflow

try:  # libyaml is ~10x faster; fall back to the pure-Python composer.
    from yaml import CSafeLoader as _Loader
except ImportError:  # pragma: no cover - depends on the build
    from yaml import SafeLoader as _Loader  # type: ignore[assignment]

MAX_BYTES = 2 * 1024 * 1024
MAX_DEPTH = 48
MAX_NODES = 200_000  # YAML nodes (scalars + collections), not workflow nodes

_T = "tag:yaml.org,2002:"
_SCALAR_TAGS = {_T + t for t in ("str", "int", "float", "bool", "null")}
_STR = _T + "str"
#: Plain scalars YAML 1.1 resolves to types the format has no use for: kept as their text
#: (a date stays "2024-01-01"; a lone "=" or "<<" value is just that text).
_TEXT_TAGS = {_T + t for t in ("timestamp", "value", "merge")}

Path = tuple[str | int, ...]

#: Migrations from version N to N+1 on the raw mapping, applied before validation.
#: Version 1 is the first format, so there are none yet; a v2 adds ``MIGRATIONS[1]``.
MIGRATIONS: dict[int, Callable[[dict[str, Any]], dict[str, Any]]] = {}


@dataclass
class Loaded:
    workflow: Workflow
    source_map: dict[Path, tuple[int, int]] = field(default_factory=dict)
    warnings: list[Issue] = field(default_factory=list)

    def position(self, path: Path) -> tuple[int, int]:
        """Line and column of the deepest known prefix of ``path`` (1-based)."""
        for i in range(len(path), -1, -1):
            pos = self.source_map.get(path[:i])
            if pos:
                return pos
        return (1, 1)

    def node_position(self, node_id: str) -> tuple[int, int]:
        for i, n in enumerate(self.workflow.nodes):
            if n.id == node_id:
                return self.position(("nodes", i))
        return (1, 1)


def content_hash(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


# ---------------------------------------------------------------- loading


class _Walker:
    def __init__(self, filename: str, text: str = "") -> None:
        self.filename = filename
        self.text = text
        self.source_map: dict[Path, tuple[int, int]] = {}
        self.seen: set[int] = set()
        self.count = 0
        self._scalar = _Loader("")  # only its scalar constructor is used

    def fail(self, code: str, message: str, mark: Any, hint: str | None = None) -> None:
        raise WorkflowLoadError([Issue(code, message, line=mark.line + 1, col=mark.column + 1, hint=hint)])

    def walk(self, node: yaml.Node, path: Path, depth: int) -> Any:
        self.count += 1
        if self.count > MAX_NODES:
            self.fail("YAML_TOO_LARGE", f"more than {MAX_NODES} YAML values", node.start_mark)
        if depth > MAX_DEPTH:
            self.fail("YAML_TOO_DEEP", f"nesting deeper than {MAX_DEPTH} levels", node.start_mark)
        if id(node) in self.seen:
            self.fail(
                "YAML_ALIAS",
                "anchors and aliases (&name / *name) are not allowed",
                self._alias_mark(node.start_mark),
                "write the value out in full",
            )
        self.seen.add(id(node))
        self.source_map[path] = (node.start_mark.line + 1, node.start_mark.column + 1)
        if isinstance(node, yaml.MappingNode):
            if node.tag != _T + "map":
                self._bad_tag(node)
            out: dict[str, Any] = {}
            for key_node, value_node in node.value:
                if key_node.tag == _T + "merge":
                    self.fail("YAML_ALIAS", "merge keys (<<) are not allowed", key_node.start_mark)
                key = self.walk(key_node, (*path, "<key>"), depth + 1)
                if not isinstance(key, str):
                    key = str(key) if isinstance(key, int | float | bool) else None
                    if key is None:
                        self.fail("YAML_KEY", "mapping keys must be text", key_node.start_mark)
                if key in out:
                    self.fail(
                        "YAML_DUPLICATE_KEY",
                        f"key {key!r} appears twice in this mapping",
                        key_node.start_mark,
                        "remove one of them",
                    )
                out[key] = self.walk(value_node, (*path, key), depth + 1)
            return out
        if isinstance(node, yaml.SequenceNode):
            if node.tag != _T + "seq":
                self._bad_tag(node)
            return [self.walk(v, (*path, i), depth + 1) for i, v in enumerate(node.value)]
        if node.tag == _STR or node.tag in _TEXT_TAGS:
            # Text as written (most scalars: skips PyYAML's constructor); dates stay text too.
            return node.value
        if node.tag not in _SCALAR_TAGS:
            self._bad_tag(node)
        try:
            return self._scalar.construct_object(node)
        except Exception:  # PyYAML raises ValueError, KeyError, IndexError... on bad scalars
            # `!!int abc`, `!!int` alone, `!!bool maybe`, an integer longer than Python converts...
            self.fail(
                "YAML_VALUE",
                f"{node.value[:40]!r} is not a valid {node.tag.rsplit(':', 1)[-1]}",
                node.start_mark,
                "remove the !!tag or fix the value",
            )

    def _alias_mark(self, fallback: Any) -> Any:
        # The composed tree shares one node per anchor, so the alias's own place (the first
        # one: the walk goes in document order) is only in the tokens. Error path only.
        try:
            for tok in yaml.scan(self.text, Loader=_Loader):
                if isinstance(tok, yaml.AliasToken):
                    return tok.start_mark
        except yaml.YAMLError:
            pass
        return fallback

    def _bad_tag(self, node: yaml.Node) -> None:
        self.fail(
            "YAML_TAG",
            f"the tag {node.tag!r} is not allowed; workflow files hold only plain values",
            node.start_mark,
            "remove the !tag",
        )


def parse_yaml(text: str | bytes, filename: str = "<workflow>") -> tuple[Any, dict[Path, tuple[int, int]]]:
    """Text -> plain data plus a path -> (line, col) map. Raises ``WorkflowLoadError``."""
    if isinstance(text, bytes):
        if len(text) > MAX_BYTES:
            raise WorkflowLoadError([_too_large(len(text))])
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError as e:
            line = text.count(b"\n", 0, e.start) + 1
            col = e.start - (text.rfind(b"\n", 0, e.start) + 1) + 1
            issue = Issue(
                "YAML_ENCODING",
                f"not UTF-8 text (byte {e.start})",
                line=line,
                col=col,
                hint="save the file as UTF-8",
            )
            raise WorkflowLoadError([issue]) from None
    # Characters never outnumber UTF-8 bytes; encode only when the count alone can't decide.
    if len(text) > MAX_BYTES or (len(text) > MAX_BYTES // 4 and len(text.encode("utf-8")) > MAX_BYTES):
        raise WorkflowLoadError([_too_large(len(text.encode("utf-8")))])
    if not text.strip():
        raise WorkflowLoadError([Issue("YAML_EMPTY", "the file is empty", hint="start with 'version: 1'")])
    try:
        root = yaml.compose(text, Loader=_Loader)
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        # libyaml stops at its own nesting limit (1000) before our walker could count.
        code = "YAML_TOO_DEEP" if "nesting depth" in str(e.problem) else "YAML_SYNTAX"
        raise WorkflowLoadError(
            [
                Issue(
                    code,
                    f"{e.problem or 'invalid YAML'}" + (f" ({e.context})" if e.context else ""),
                    line=mark.line + 1 if mark else None,
                    col=mark.column + 1 if mark else None,
                )
            ]
        ) from None
    except (yaml.YAMLError, RecursionError, ValueError) as e:
        raise WorkflowLoadError([Issue("YAML_SYNTAX", f"invalid YAML: {e}")]) from None
    if root is None:
        raise WorkflowLoadError([Issue("YAML_EMPTY", "the file has no content")])
    walker = _Walker(filename, text)
    data = walker.walk(root, (), 0)
    return data, walker.source_map


def _too_large(n: int) -> Issue:
    return Issue(
        "YAML_TOO_LARGE",
        f"the file is {n} bytes; the limit is {MAX_BYTES}",
        hint="split it into subflows",
    )


def load(text: str | bytes, filename: str = "<workflow>") -> Loaded:
    """Parse, migrate and validate the file's shape. Graph rules are ``builder.graph``'s job."""
    data, source_map = parse_yaml(text, filename)
    if data is None:  # `---` or `~` alone: a document with nothing in it
        raise WorkflowLoadError([Issue("YAML_EMPTY", "the file has no content", line=1, col=1)])
    if not isinstance(data, dict):
        raise WorkflowLoadError(
            [
                Issue(
                    "SCHEMA_NOT_MAPPING",
                    "a workflow file is a mapping (version:, id:, nodes:...)",
                    line=1,
                    col=1,
                )
            ]
        )
    data = migrate(data, source_map)
    try:
        wf = Workflow.model_validate(data)
    except ValidationError as e:
        loaded = Loaded(Workflow.model_construct(), source_map)
        issues = []
        for err in e.errors():
            loc = tuple(err["loc"])
            line, col = loaded.position(_loc_to_path(loc))
            where = ".".join(str(p) for p in loc) or "file"
            issues.append(Issue("SCHEMA_INVALID", f"{where}: {err['msg']}", line=line, col=col))
        raise WorkflowLoadError(issues) from None
    warnings = []
    comment_lines = find_comment_lines(text if isinstance(text, str) else text.decode("utf-8"))
    if comment_lines:
        warnings.append(
            Issue(
                "YAML_COMMENTS_DROPPED",
                f"{len(comment_lines)} comment line(s) are not kept by the canonical format",
                severity="warning",
                line=comment_lines[0],
                col=1,
                hint="move the text into a name, description or notes field",
            )
        )
    return Loaded(wf, source_map, warnings)


def _loc_to_path(loc: tuple[Any, ...]) -> Path:
    # pydantic reports aliases ('from'/'to') already; keep ints and strs as they are.
    return tuple(p for p in loc if isinstance(p, str | int))


def migrate(data: dict[str, Any], source_map: dict[Path, tuple[int, int]] | None = None) -> dict[str, Any]:
    version = data.get("version", CURRENT_VERSION)
    if not isinstance(version, int) or isinstance(version, bool):
        line, col = (source_map or {}).get(("version",), (1, 1))
        raise WorkflowLoadError(
            [Issue("VERSION_INVALID", "version must be a whole number", line=line, col=col)]
        )
    if version > CURRENT_VERSION or version < 1:
        line, col = (source_map or {}).get(("version",), (1, 1))
        raise WorkflowLoadError(
            [
                Issue(
                    "VERSION_UNSUPPORTED",
                    f"format version {version} is not supported (this flowdesk reads 1..{CURRENT_VERSION})",
                    line=line,
                    col=col,
                    hint="upgrade flowdesk" if version > CURRENT_VERSION else "set version: 1",
                )
            ]
        )
    while version < CURRENT_VERSION:
        data = MIGRATIONS[version](data)
        version += 1
        data["version"] = version
    return data


_COMMENT_RE = re.compile(r"(^|\s)#")


def find_comment_lines(text: str) -> list[int]:
    """1-based lines holding a YAML comment (a ``#`` outside any scalar)."""
    if "#" not in text:
        return []
    spans: list[tuple[int, int]] = []
    try:
        for tok in yaml.scan(text, Loader=_Loader):
            if isinstance(tok, yaml.ScalarToken):
                spans.append((tok.start_mark.index, tok.end_mark.index))
    except yaml.YAMLError:
        return []
    lines: list[int] = []
    offset = 0
    span_i = 0
    for lineno, line in enumerate(text.splitlines(keepends=True), start=1):
        for m in _COMMENT_RE.finditer(line):
            pos = offset + m.end() - 1
            while span_i < len(spans) and spans[span_i][1] <= pos:
                span_i += 1
            inside = span_i < len(spans) and spans[span_i][0] <= pos < spans[span_i][1]
            if not inside:
                lines.append(lineno)
                break
        offset += len(line)
    return lines


# ---------------------------------------------------------------- dumping


class _Flow(list[Any]):
    """A list dumped in flow style: ``[0, 120]``."""


class _FlowMap(dict[str, Any]):
    """A mapping dumped on one line: ``{from: a, to: b}``."""


class _CanonicalDumper(yaml.SafeDumper):
    """Pure-Python emitter: the C one cannot indent list items under their key."""

    def increase_indent(self, flow: bool = False, indentless: bool = False) -> None:
        super().increase_indent(flow, False)


#: Characters YAML 1.1 reads as line breaks but PyYAML writes raw in plain, quoted and
#: literal styles, so they would come back as "\n" or a space: only escapes keep them.
_ODD_BREAKS = ("\x85", "\u2028", "\u2029")


def _repr_str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    if any(c in value for c in _ODD_BREAKS):
        return dumper.represent_scalar(_T + "str", value, style='"')
    if "\n" in value and not any(line != line.rstrip() for line in value.split("\n")):
        return dumper.represent_scalar(_T + "str", value, style="|")
    return dumper.represent_scalar(_T + "str", value)


_CanonicalDumper.add_representer(str, _repr_str)
_CanonicalDumper.add_representer(_Flow, lambda d, v: d.represent_sequence(_T + "seq", v, flow_style=True))
_CanonicalDumper.add_representer(
    _FlowMap, lambda d, v: d.represent_mapping(_T + "map", v.items(), flow_style=True)
)


#: Float fields written as ints when whole (`timeout_s: 5`, the way people write them).
_POLICY_FLOATS = {"timeout_s", "backoff_s"}
_NODE_DEFAULTS = {
    "name": None,
    "notes": None,
    "config": {},
    "policy": None,
    "max_visits": None,
    "join": "any",
}


#: A list or mapping of plain scalars is written on one line (``expect: [200, 404]``,
#: ``when: {left: a, op: eq, right: b}``) when that line stays this short.
INLINE_MAX = 72


def _is_inline_scalar(v: Any) -> bool:
    if isinstance(v, str):
        return v.isprintable() and len(v) <= INLINE_MAX and v == v.strip() and v != ""
    return v is None or isinstance(v, bool | int | float)


def _inline_small(value: Any) -> Any:
    """Config values with short scalar-only lists/mappings marked for flow style (canonical)."""
    if isinstance(value, dict):
        if (
            value
            and all(_is_inline_scalar(v) for v in value.values())
            and all(_is_inline_scalar(k) for k in value)
        ):
            flow = _FlowMap(value)
            if (
                len(yaml.dump(dict(value), Dumper=_CanonicalDumper, default_flow_style=True, width=10_000))
                <= INLINE_MAX
            ):
                return flow
        return {k: _inline_small(v) for k, v in value.items()}
    if isinstance(value, list):
        if (
            value
            and all(_is_inline_scalar(v) for v in value)
            and (
                len(yaml.dump(list(value), Dumper=_CanonicalDumper, default_flow_style=True, width=10_000))
                <= INLINE_MAX
            )
        ):
            return _Flow(value)
        return [_inline_small(v) for v in value]
    return value


def to_data(wf: Workflow) -> dict[str, Any]:
    """The canonical plain-data form: fixed key order, defaults left out."""
    out: dict[str, Any] = {"version": wf.version, "id": wf.id, "name": wf.name}
    if wf.description:
        out["description"] = wf.description
    if wf.notes is not None:
        out["notes"] = wf.notes
    nodes = []
    for n in wf.nodes:
        item: dict[str, Any] = {"id": n.id, "type": n.type}
        for key, default in _NODE_DEFAULTS.items():
            value = getattr(n, key)
            if value == default:
                continue
            if key == "policy" and n.policy is not None:
                # An all-default policy stays as `policy: {}` so it loads back as a Policy, not None.
                value = {
                    k: int(v) if k in _POLICY_FLOATS and float(v).is_integer() else v
                    for k, v in n.policy.model_dump(exclude_defaults=True).items()
                }
            if key == "config":  # the config block itself stays block style; its values may inline
                value = {k: _inline_small(v) for k, v in value.items()}
            item[key] = value
        nodes.append(item)
    out["nodes"] = nodes
    edges = []
    for e in wf.edges:
        edge = _FlowMap({"from": e.source, "to": e.target})
        if e.when is not None:
            edge["when"] = e.when
        edges.append(edge)
    out["edges"] = edges
    if wf.layout:
        out["layout"] = {k: _Flow(v) for k, v in wf.layout.items()}
    return out


def dump(wf: Workflow) -> str:
    text: str = yaml.dump(
        to_data(wf),
        Dumper=_CanonicalDumper,
        sort_keys=False,
        allow_unicode=True,
        default_flow_style=False,
        width=10_000,
        indent=2,
    )
    return text
