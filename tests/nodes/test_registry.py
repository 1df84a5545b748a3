"""The NODE_TYPES registry: every module in nodes/ registered exactly once, documented, and its
Config's JSON schema (which drives the canvas form) generated."""

from __future__ import annotations

import importlib
import json
import pkgutil

import pytest

import nodes
from nodes import NODE_TYPES
from nodes.base import NodeConfig, NodeType

NOT_NODE_MODULES = {"base"}
MODULES = sorted(m.name for m in pkgutil.iter_modules(nodes.__path__) if m.name not in NOT_NODE_MODULES)


def test_every_node_module_is_registered_exactly_once():
    registered = [spec for spec in NODE_TYPES.values()]
    for name in MODULES:
        module = importlib.import_module(f"nodes.{name}")
        assert isinstance(module.NODE, NodeType), f"nodes/{name}.py has no NODE"
        assert sum(spec is module.NODE for spec in registered) == 1, f"nodes/{name}.py is not registered"
        assert module.NODE.type == name, "the module is named after its YAML type string"
    assert len(NODE_TYPES) == len(MODULES)


def test_registry_keys_are_the_type_strings():
    assert all(key == spec.type for key, spec in NODE_TYPES.items())
    assert len({spec.type for spec in NODE_TYPES.values()}) == len(NODE_TYPES)


def test_the_design_node_types_are_all_there():
    expected = {
        "start",
        "reply",
        "llm",
        "classify",
        "condition",
        "extract",
        "set",
        "http_request",
        "knowledge",
        "handoff",
        "end",
        "saga",
    }
    assert expected <= set(NODE_TYPES)


@pytest.mark.parametrize("type_", sorted(NODE_TYPES))
def test_each_node_is_documented(type_):
    spec = NODE_TYPES[type_]
    module = importlib.import_module(spec.run.__module__)
    assert module.__doc__ and module.__doc__.strip()
    assert spec.description.strip() and spec.title and spec.group and spec.icon
    assert issubclass(spec.config, NodeConfig)


@pytest.mark.parametrize("type_", sorted(NODE_TYPES))
def test_config_json_schema_generates_with_described_fields(type_):
    schema = NODE_TYPES[type_].config.model_json_schema()
    json.dumps(schema)  # serialisable: it goes to the browser
    assert schema["type"] == "object"
    undocumented = [k for k, v in schema.get("properties", {}).items() if not v.get("description")]
    assert not undocumented, f"{type_}: fields without a description: {undocumented}"


@pytest.mark.parametrize("type_", sorted(NODE_TYPES))
def test_unknown_config_keys_are_refused(type_):
    from pydantic import ValidationError

    with pytest.raises(ValidationError):
        NODE_TYPES[type_].config.model_validate({"definitely_not_a_field": 1})


@pytest.mark.parametrize("type_", sorted(NODE_TYPES))
def test_error_output_only_for_nodes_that_can_fail(type_):
    spec = NODE_TYPES[type_]
    cfg = _minimal_config(type_)
    if cfg is None:
        pytest.skip(f"{type_} has no minimal config here")
    outputs = spec.all_outputs(spec.config.model_validate(cfg))
    assert ("error" in outputs) == spec.can_fail
    assert len(outputs) == len(set(outputs))


def _minimal_config(type_: str) -> dict | None:
    return {
        "start": {},
        "end": {},
        "reply": {"text": "hi"},
        "llm": {"prompt": "Be helpful."},
        "classify": {"intents": [{"name": "faq", "examples": ["what are your hours"]}]},
        "condition": {"cases": [{"label": "yes", "when": {"left": "x", "op": "exists"}}]},
        "extract": {"fields": {"order_id": {"pattern": r"\d+"}}},
        "set": {"values": {"a": 1}},
        "http_request": {"url": "https://example.com/x"},
        "knowledge": {"documents": [{"id": "a", "title": "A", "text": "alpha"}]},
        "handoff": {},
        "subflow": {"workflow": "other"},
        "saga": {"steps": [{"id": "a", "action": {"url": "https://example.com/a"}}]},
    }.get(type_)
