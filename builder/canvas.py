"""Pure edits behind the canvas editor: Workflow <-> React Flow JSON, node forms, undo history.

The canvas (``assets/flow_editor.jsx``) owns the live graph in the browser and hands the
whole graph back on every gesture (drag-stop, connect, delete, paste). ``from_flow`` turns
that into a ``Workflow`` that keeps the file's order of nodes and edges, so the canonical
dump of a moved node differs from the file in its ``layout`` line only.

Node forms come from the node type's pydantic JSON schema: each top-level config field gets
a *kind* (text, template, number, integer, bool, select, list, keyvalue, yaml) and the form's
text values are converted back here. Nothing here does I/O.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

import networkx as nx
from pydantic import BaseModel, ValidationError

from builder.graph import BUILTINS, to_digraph
from builder.issues import Issue, WorkflowLoadError
from builder.layout import DY, with_layout
from builder.schema import ERROR_OUTPUT, EXHAUSTED_OUTPUT, NODE_ID_RE, Edge, Node, Workflow
from builder.yaml_io import parse_yaml
from core.errors import Invalid
from nodes import NODE_TYPES
from nodes.base import NodeType

#: The handle of the default (unlabelled) path; every other handle id is an output label.
DEFAULT_HANDLE = "default"
#: The React Flow node type every card uses (one card component, styled per node type).
CARD = "card"
SUMMARY_MAX = 90
#: Vertical step between rows (a node added by click goes one row below the lowest card).
DY_GAP = DY
_NODE_FIELDS = ("type", "name", "notes", "config", "policy", "max_visits", "join")


# ---------------------------------------------------------------- palette


def palette(registry: dict[str, NodeType] | None = None) -> list[dict[str, Any]]:
    """Node types grouped for the palette, groups and items in registry order."""
    groups: dict[str, list[dict[str, str]]] = {}
    for spec in (registry or NODE_TYPES).values():
        groups.setdefault(spec.group, []).append(
            {
                "type": spec.type,
                "title": spec.title,
                "icon": spec.icon,
                "group": spec.group,
                "description": _first_sentence(spec.description),
            }
        )
    return [{"group": g, "items": items} for g, items in groups.items()]


def _first_sentence(doc: str) -> str:
    """The docstring's lead, as a sentence: "Say a templated message to the user."."""
    text = " ".join(doc.split()).replace("``", "")
    text = re.sub(r"^\w+:\s*", "", text)
    cut = re.search(r"[.;:(](\s|$)|\s\(", text)
    text = (text[: cut.start()] if cut else text).strip().rstrip(",;:")
    return (text[:1].upper() + text[1:] + ".")[:140] if text else ""


# ---------------------------------------------------------------- workflow -> canvas


def _config_model(spec: NodeType | None, config: dict[str, Any]) -> BaseModel | None:
    if spec is None:
        return None
    try:
        return spec.config.model_validate(config)
    except ValidationError:
        return None


def outputs(node: Node, registry: dict[str, NodeType] | None = None) -> list[str]:
    """The named outputs a node offers (``error``, ``exhausted`` included when they apply)."""
    spec = (registry or NODE_TYPES).get(node.type)
    cfg = _config_model(spec, node.config)
    outs: list[str] = []
    if spec is not None and cfg is not None:
        outs = spec.all_outputs(cfg)
    elif spec is not None and spec.can_fail:
        outs = [ERROR_OUTPUT]
    if node.max_visits is not None and EXHAUSTED_OUTPUT not in outs:
        outs.append(EXHAUSTED_OUTPUT)
    return outs


def summary(node: Node) -> str:
    """One line describing a node's config for its card."""
    cfg = node.config
    parts: list[str] = []
    if node.type == "http_request" and isinstance(cfg.get("url"), str):
        parts.append(f"{cfg.get('method', 'GET')} {cfg['url']}")
    else:
        for key, value in cfg.items():
            if isinstance(value, str) and value:
                parts.append(" ".join(value.split()))
            elif isinstance(value, list):
                parts.append(f"{len(value)} {key}")
            elif isinstance(value, dict) and value:
                parts.append(f"{key}: {', '.join(map(str, value))}")
            if len(parts) == 2:
                break
    text = " · ".join(parts)
    return text if len(text) <= SUMMARY_MAX else text[: SUMMARY_MAX - 1] + "…"


def node_fields(node: Node) -> dict[str, Any]:
    """Everything of a node but its id, as plain JSON (the canvas carries it back unchanged)."""
    return node.model_dump(mode="json", include=set(_NODE_FIELDS), by_alias=True)


def flow_node(
    node: Node, position: tuple[int, int], registry: dict[str, NodeType] | None = None
) -> dict[str, Any]:
    spec = (registry or NODE_TYPES).get(node.type)
    return {
        "id": node.id,
        "type": CARD,
        "position": {"x": position[0], "y": position[1]},
        "data": {
            "kind": node.type,
            "title": node.name or (spec.title if spec else node.type),
            "icon": spec.icon if spec else "circle-help",
            "group": spec.group if spec else "",
            "summary": summary(node),
            "outputs": outputs(node, registry),
            "input": node.type != "start",
            "node": node_fields(node),
        },
    }


def flow_edges(wf: Workflow) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    seen: set[str] = set()
    for i, e in enumerate(wf.edges):
        edge_id = f"{e.source}->{e.target}:{e.when or ''}"
        if edge_id in seen:  # a duplicate edge (a warning) still needs its own id
            edge_id += f"#{i}"
        seen.add(edge_id)
        item: dict[str, Any] = {
            "id": edge_id,
            "source": e.source,
            "target": e.target,
            "sourceHandle": e.when or DEFAULT_HANDLE,
        }
        if e.when:
            item["label"] = e.when
            if e.when == ERROR_OUTPUT:
                item["style"] = {"stroke": "#e5484d", "strokeDasharray": "5 4"}
        out.append(item)
    return out


def to_flow(wf: Workflow, registry: dict[str, NodeType] | None = None) -> dict[str, Any]:
    """``{"nodes", "edges"}`` for React Flow; nodes without a layout entry are laid out."""
    laid = with_layout(wf) if any(n.id not in wf.layout for n in wf.nodes) else wf
    nodes = [flow_node(n, laid.layout.get(n.id, (0, 0)), registry) for n in wf.nodes]
    return {"nodes": nodes, "edges": flow_edges(wf)}


def issues_by_node(issues: list[Issue]) -> dict[str, dict[str, Any]]:
    """``{node id: {"severity", "messages"}}``: the badges on the cards."""
    out: dict[str, dict[str, Any]] = {}
    for i in issues:
        if not i.node_id:
            continue
        entry = out.setdefault(i.node_id, {"severity": "warning", "messages": []})
        if i.severity == "error":
            entry["severity"] = "error"
        # On the card the node is known: "config.url: Field required", not "node 'x' (http_request) ...".
        text = re.sub(rf"^node '{re.escape(i.node_id)}' (\(\w+\) )?", "", i.message)
        entry["messages"].append(f"{i.code}: {text}")
    return out


# ---------------------------------------------------------------- canvas -> workflow


def _bad(message: str) -> Invalid:
    return Invalid("canvas_invalid", message)


def from_flow(wf: Workflow, graph: dict[str, Any]) -> Workflow:
    """The workflow the canvas shows: ``graph`` is ``{"nodes": [...], "edges": [...]}`` as the
    browser sent it. File order is kept for known nodes and edges; new ones go last."""
    raw_nodes = graph.get("nodes")
    raw_edges = graph.get("edges")
    if not isinstance(raw_nodes, list) or not isinstance(raw_edges, list):
        raise _bad("the canvas sent no node or edge list")
    old = {n.id: n for n in wf.nodes}
    nodes: dict[str, Node] = {}
    positions: dict[str, tuple[int, int]] = {}
    for item in raw_nodes:
        if not isinstance(item, dict) or not isinstance(item.get("id"), str):
            raise _bad("a canvas node has no id")
        node_id = item["id"]
        data = item.get("data") if isinstance(item.get("data"), dict) else {}
        fields = data.get("node") if isinstance(data.get("node"), dict) else None
        if fields is None:
            if node_id not in old:
                raise _bad(f"canvas node '{node_id}' has no type or config")
            node = old[node_id]
        else:
            try:
                node = Node.model_validate(
                    {**{k: fields[k] for k in _NODE_FIELDS if k in fields}, "id": node_id}
                )
            except ValidationError as e:
                raise _bad(f"canvas node '{node_id}': {e.errors()[0]['msg']}") from None
        if node_id in nodes:
            raise _bad(f"two canvas nodes have the id '{node_id}'")
        nodes[node_id] = node
        pos = item.get("position")
        if isinstance(pos, dict) and all(isinstance(pos.get(k), int | float) for k in ("x", "y")):
            positions[node_id] = (round(pos["x"]), round(pos["y"]))
        elif node_id in wf.layout:
            positions[node_id] = wf.layout[node_id]
    ordered = [nodes[n.id] for n in wf.nodes if n.id in nodes]
    ordered += [n for i, n in nodes.items() if i not in old]

    edges: list[Edge] = []
    for item in raw_edges:
        if not isinstance(item, dict):
            raise _bad("a canvas edge is not an object")
        source, target = item.get("source"), item.get("target")
        if source not in nodes or target not in nodes:
            continue  # an edge of a node deleted in the same gesture
        handle = item.get("sourceHandle")
        when = None if handle in (None, "", DEFAULT_HANDLE) else str(handle)
        edges.append(Edge(source=source, target=target, when=when))
    edges = _keep_order(wf.edges, edges)

    layout = {k: positions[k] for k in wf.layout if k in positions}
    layout.update({k: v for k, v in positions.items() if k not in layout})
    return wf.model_copy(update={"nodes": ordered, "edges": edges, "layout": layout})


def _key(e: Edge) -> tuple[str, str, str | None]:
    return (e.source, e.target, e.when)


def _keep_order(before: list[Edge], after: list[Edge]) -> list[Edge]:
    """``after``'s edges, those also in ``before`` in ``before``'s order, new ones last."""
    pool: dict[tuple[str, str, str | None], int] = {}
    for e in after:
        pool[_key(e)] = pool.get(_key(e), 0) + 1
    kept: list[Edge] = []
    for e in before:
        if pool.get(_key(e), 0) > 0:
            pool[_key(e)] -= 1
            kept.append(e)
    for e in after:
        if pool.get(_key(e), 0) > 0:
            pool[_key(e)] -= 1
            kept.append(e)
    return kept


# ---------------------------------------------------------------- edits


def new_node_id(wf: Workflow, base: str) -> str:
    taken = {n.id for n in wf.nodes}
    stem = re.sub(r"[^A-Za-z0-9_]", "_", base)[:56] or "node"
    if not re.match(r"[A-Za-z_]", stem):
        stem = "n_" + stem
    if stem not in taken:
        return stem
    i = 2
    while f"{stem}_{i}" in taken:
        i += 1
    return f"{stem}_{i}"


def add_node(wf: Workflow, node_type: str, position: tuple[float, float]) -> tuple[Workflow, str]:
    """A node of ``node_type`` with an empty config (the form and its badge say what to fill)."""
    if node_type not in NODE_TYPES:
        raise Invalid("unknown_node_type", f"unknown node type '{node_type}'")
    node_id = new_node_id(wf, node_type)
    layout = {**wf.layout, node_id: (round(position[0]), round(position[1]))}
    node = Node(id=node_id, type=node_type)
    return wf.model_copy(update={"nodes": [*wf.nodes, node], "layout": layout}), node_id


def duplicate_nodes(wf: Workflow, ids: list[str], offset: int = 40) -> tuple[Workflow, list[str]]:
    """Copies of ``ids`` (and the edges among them), shifted by ``offset``; returns the new ids."""
    laid = with_layout(wf)
    mapping: dict[str, str] = {}
    nodes = list(wf.nodes)
    layout = dict(wf.layout)
    for node_id in ids:
        node = wf.node(node_id)
        if node is None:
            continue
        current = wf.model_copy(update={"nodes": nodes})
        new_id = new_node_id(current, f"{node_id}_copy")
        mapping[node_id] = new_id
        nodes.append(node.model_copy(update={"id": new_id}, deep=True))
        x, y = laid.layout[node_id]
        layout[new_id] = (x + offset, y + offset)
    edges = list(wf.edges) + [
        Edge(source=mapping[e.source], target=mapping[e.target], when=e.when)
        for e in wf.edges
        if e.source in mapping and e.target in mapping
    ]
    return wf.model_copy(update={"nodes": nodes, "edges": edges, "layout": layout}), list(mapping.values())


def delete_nodes(wf: Workflow, ids: list[str]) -> Workflow:
    gone = set(ids)
    return wf.model_copy(
        update={
            "nodes": [n for n in wf.nodes if n.id not in gone],
            "edges": [e for e in wf.edges if e.source not in gone and e.target not in gone],
            "layout": {k: v for k, v in wf.layout.items() if k not in gone},
        }
    )


def rename_node(wf: Workflow, old: str, new: str) -> Workflow:
    if old == new:
        return wf
    if not NODE_ID_RE.match(new):
        raise Invalid("bad_node_id", "node ids start with a letter or _ and use only letters, digits and _")
    if wf.node(new) is not None:
        raise Invalid("duplicate_node_id", f"there is already a node '{new}'")
    return wf.model_copy(
        update={
            "nodes": [n.model_copy(update={"id": new}) if n.id == old else n for n in wf.nodes],
            "edges": [
                Edge(
                    source=new if e.source == old else e.source,
                    target=new if e.target == old else e.target,
                    when=e.when,
                )
                for e in wf.edges
            ],
            "layout": {(new if k == old else k): v for k, v in wf.layout.items()},
        }
    )


def relayout(wf: Workflow) -> Workflow:
    """Every node laid out again (the toolbar's auto-layout)."""
    return with_layout(wf.model_copy(update={"layout": {}}))


# ---------------------------------------------------------------- variable suggestions


def upstream_variables(wf: Workflow, node_id: str, registry: dict[str, NodeType] | None = None) -> list[str]:
    """Variables a node may read: the built-ins, then every ancestor's id and what it sets."""
    reg = registry or NODE_TYPES
    g = to_digraph(wf)
    names: list[str] = sorted(BUILTINS)
    if node_id not in g:
        return names
    ancestors = nx.ancestors(g, node_id)
    if any(p == node_id or p in nx.descendants(g, node_id) for p in g.predecessors(node_id)):
        ancestors.add(node_id)  # in a loop a node reads what it set on the previous pass
    extra: list[str] = []
    for n in wf.nodes:
        if n.id not in ancestors:
            continue
        extra.append(n.id)
        spec = reg.get(n.type)
        cfg = _config_model(spec, n.config)
        if spec is not None and cfg is not None:
            extra.extend(sorted(spec.sets(cfg)))
    return names + [v for v in dict.fromkeys(extra) if v not in BUILTINS]


# ---------------------------------------------------------------- node forms


@dataclass
class FormField:
    """One input of a node's form (plain data: Reflex renders it, ``apply_form`` reads it)."""

    name: str
    label: str
    kind: str  # text | template | number | integer | bool | select | list | keyvalue | yaml
    value: str = ""
    description: str = ""
    required: bool = False
    options: list[str] = field(default_factory=list)
    placeholder: str = ""


#: Fields every node has besides its config (shown first in the form).
NODE_ID_FIELD = "__id"
NODE_NAME_FIELD = "__name"
_TEMPLATE_HINT = re.compile(r"\{\{|template", re.I)


def _optional(schema: dict[str, Any]) -> tuple[dict[str, Any], bool]:
    """``anyOf: [X, null]`` -> (X, True)."""
    options = schema.get("anyOf")
    if isinstance(options, list):
        real = [o for o in options if o.get("type") != "null"]
        if len(real) == 1 and len(real) < len(options):
            merged = {**schema, **real[0]}
            merged.pop("anyOf", None)
            return merged, True
    return schema, False


def _kind(prop: dict[str, Any]) -> tuple[str, list[str]]:
    if "enum" in prop:
        return "select", [str(v) for v in prop["enum"]]
    if "const" in prop:
        return "select", [str(prop["const"])]
    t = prop.get("type")
    if t == "string":
        hint = f"{prop.get('description', '')} {prop.get('default', '')}"
        long = prop.get("maxLength", 0) > 500
        return ("template" if _TEMPLATE_HINT.search(hint) or long else "text"), []
    if t in ("number", "integer", "boolean"):
        return {"number": "number", "integer": "integer", "boolean": "bool"}[t], []
    if t == "array" and prop.get("items", {}).get("type") in ("string", "integer", "number"):
        return "list", []
    if t == "object" and (
        prop.get("additionalProperties") is True
        or prop.get("additionalProperties", {}).get("type") in ("string", "integer", "number")
    ):
        return "keyvalue", []
    return "yaml", []


def _label(name: str) -> str:
    if name.endswith("_s"):
        return name[:-2].replace("_", " ").capitalize() + " (s)"
    return name.replace("_", " ").capitalize()


def _yaml_text(value: Any) -> str:
    import yaml

    return yaml.safe_dump(value, sort_keys=False, allow_unicode=True, default_flow_style=False, width=10_000)


def _to_text(kind: str, value: Any) -> str:
    if value is None:
        return ""
    if kind == "bool":
        return "true" if value else "false"
    if kind == "list":
        return "\n".join(str(v) for v in value) if isinstance(value, list) else str(value)
    if kind == "keyvalue":
        if isinstance(value, dict):
            return "\n".join(
                f"{k}: {json.dumps(v) if not isinstance(v, str) else v}" for k, v in value.items()
            )
        return str(value)
    if kind == "yaml":
        return _yaml_text(value).rstrip("\n")
    return str(value)


def _kv_text(value: Any) -> str:
    """A key/value line's value: text as written, anything else (or text that reads as JSON) as JSON."""
    if isinstance(value, str):
        try:
            json.loads(value)
        except ValueError:
            return value if value == value.strip() and "\n" not in value else json.dumps(value)
        return json.dumps(value)
    return json.dumps(value)


def _kv_parse(text: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for n, line in enumerate(text.split("\n"), 1):
        if not line.strip():
            continue
        key, sep, raw = line.partition(":")
        if not sep or not key.strip():
            raise ValueError(f"line {n}: write 'name: value'")
        raw = raw.strip()
        try:
            value: Any = json.loads(raw)
        except ValueError:
            value = raw
        out[key.strip()] = value
    return out


def form_fields(node: Node, registry: dict[str, NodeType] | None = None) -> list[FormField]:
    """The form of a node: id and title, then one field per config property of its type."""
    fields = [
        FormField(
            NODE_ID_FIELD, "Node id", "text", node.id, "Letters, digits and _; edges follow a rename.", True
        ),
        FormField(NODE_NAME_FIELD, "Title", "text", node.name or "", "Shown on the card (optional)."),
    ]
    spec = (registry or NODE_TYPES).get(node.type)
    if spec is None:
        fields.append(
            FormField("__config", "Config", "yaml", _to_text("yaml", node.config) if node.config else "")
        )
        return fields
    schema = spec.config.model_json_schema()
    required = set(schema.get("required", []))
    for name, raw in schema.get("properties", {}).items():
        prop, optional = _optional(raw)
        kind, options = _kind(prop)
        present = name in node.config
        value = node.config.get(name, prop.get("default") if "default" in prop else None)
        placeholder = ""
        if kind == "list":
            placeholder = "one value per line"
        elif kind == "keyvalue":
            placeholder = "name: value (one per line)"
        elif kind == "yaml" and not present:
            placeholder = "YAML"
        if optional and kind == "select":
            options = ["", *options]
        fields.append(
            FormField(
                name=name,
                label=_label(name),
                kind=kind,
                value=_to_text(kind, value) if (present or value is not None) else "",
                description=str(prop.get("description", raw.get("description", ""))),
                required=name in required,
                options=options,
                placeholder=placeholder,
            )
        )
    return fields


def _parse_block(text: str, name: str) -> Any:
    try:
        data, _ = parse_yaml(text, filename=name)
    except WorkflowLoadError as e:
        first = e.issues[0]
        raise ValueError(f"line {first.line or 1}: {first.message}") from None
    return data


def _from_text(f: FormField, text: str) -> Any:
    """Form text -> config value; ``None`` means "leave the key out"."""
    text = text.replace("\r\n", "\n")
    if f.kind in ("text", "template", "select"):
        return text if text.strip() else None
    if f.kind in ("number", "integer"):
        if not text.strip():
            return None
        try:
            return (
                int(text)
                if f.kind == "integer"
                else (int(text) if re.fullmatch(r"-?\d+", text.strip()) else float(text))
            )
        except ValueError:
            raise ValueError(f"'{text}' is not a {'whole ' if f.kind == 'integer' else ''}number") from None
    if f.kind == "bool":
        return text.strip().lower() in ("true", "on", "1", "yes")
    if f.kind == "list":
        items = [line.strip() for line in text.split("\n") if line.strip()]
        return [int(i) if re.fullmatch(r"-?\d+", i) else i for i in items] if items else None
    if f.kind == "keyvalue":
        return _kv_parse(text) or None
    if not text.strip():
        return None
    return _parse_block(text, f.name)


def apply_form(
    wf: Workflow, node_id: str, values: dict[str, Any], registry: dict[str, NodeType] | None = None
) -> tuple[Workflow, dict[str, str]]:
    """The workflow with the form's values in node ``node_id``; ``(unchanged wf, errors)`` when a
    value cannot even be read (bad number, bad YAML). Config rules are *not* checked here: the
    draft goes through the same validation as a YAML file and its issues land on the node."""
    node = wf.node(node_id)
    if node is None:
        raise Invalid("node_not_found", f"no node '{node_id}'")
    errors: dict[str, str] = {}
    config: dict[str, Any] = {}
    name = node.name
    new_id = node_id
    specs = form_fields(node, registry)
    for f in specs:
        if f.name not in values and f.kind != "bool":
            if f.name in node.config:
                config[f.name] = node.config[f.name]
            continue
        raw = values.get(f.name, "")
        text = (
            raw
            if isinstance(raw, str)
            else ("true" if raw is True else "false" if raw is False else str(raw))
        )
        try:
            value = _from_text(f, text)
        except ValueError as e:
            errors[f.name] = str(e)
            continue
        if f.name == NODE_ID_FIELD:
            new_id = (value or "").strip()
        elif f.name == NODE_NAME_FIELD:
            name = value.strip() if value else None
        elif f.name == "__config":
            config = value if isinstance(value, dict) else {}
        elif value is not None:
            default = _schema_default(node.type, f.name, registry)
            if f.name in node.config or value != default:
                config[f.name] = value
    for key, value in node.config.items():  # keys the schema does not know stay (they get an issue)
        if key not in config and not any(f.name == key for f in specs):
            config[key] = value
    if errors:
        return wf, errors
    # The file's key order first (an unchanged form is an unchanged file), new keys after.
    config = {**{k: config[k] for k in node.config if k in config}, **config}
    updated = node.model_copy(update={"config": config, "name": name})
    out = wf.model_copy(update={"nodes": [updated if n.id == node_id else n for n in wf.nodes]})
    if new_id != node_id:
        try:
            out = rename_node(out, node_id, new_id)
        except Invalid as e:
            return wf, {NODE_ID_FIELD: e.message}
    return out, {}


def _schema_default(node_type: str, name: str, registry: dict[str, NodeType] | None) -> Any:
    spec = (registry or NODE_TYPES).get(node_type)
    if spec is None:
        return None
    info = spec.config.model_fields.get(name)
    if info is None or info.is_required():
        return None
    return info.get_default(call_default_factory=True)


# ---------------------------------------------------------------- undo / redo


@dataclass
class History:
    """Undo/redo over canonical YAML snapshots (plain lists, so a UI state can hold them)."""

    past: list[str] = field(default_factory=list)
    future: list[str] = field(default_factory=list)
    limit: int = 100

    def record(self, before: str, after: str) -> None:
        """A change from ``before`` to ``after``; a new change drops the redo branch."""
        if before == after:
            return
        self.past.append(before)
        del self.past[: max(0, len(self.past) - self.limit)]
        self.future.clear()

    def undo(self, current: str) -> str | None:
        if not self.past:
            return None
        self.future.append(current)
        return self.past.pop()

    def redo(self, current: str) -> str | None:
        if not self.future:
            return None
        self.past.append(current)
        return self.future.pop()

    @property
    def can_undo(self) -> bool:
        return bool(self.past)

    @property
    def can_redo(self) -> bool:
        return bool(self.future)
