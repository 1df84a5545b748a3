"""builder.yaml_io: canonical round trips (golden + property) and hostile input."""

from __future__ import annotations

import string
import textwrap
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from builder.issues import WorkflowLoadError
from builder.schema import Edge, Node, Policy, Workflow
from builder.yaml_io import MAX_BYTES, MAX_DEPTH, dump, load, parse_yaml

ROOT = Path(__file__).resolve().parents[2]
FIXTURE = ROOT / "tests" / "fixtures" / "canonical.yaml"
GOLDEN = [FIXTURE, *sorted((ROOT / "workflows").glob("*.yaml"))]


@pytest.mark.parametrize("path", GOLDEN, ids=lambda p: p.name)
def test_golden_files_round_trip_byte_for_byte(path):
    text = path.read_text(encoding="utf-8")
    loaded = load(text, filename=str(path))
    assert dump(loaded.workflow) == text
    assert loaded.warnings == []  # canonical files hold no comments


def test_fixture_model_round_trip_and_shape():
    w = load(FIXTURE.read_bytes()).workflow
    assert load(dump(w)).workflow == w
    lookup = w.node("lookup")
    assert lookup is not None and lookup.policy == Policy(timeout_s=10, retries=1, backoff_s=0.5)
    assert lookup.config["since"] == "2024-01-01" and lookup.config["api_version"] == "1.0"
    assert lookup.config["fallback"] is None and lookup.config["flags"] == [True]
    assert w.node("answer").config["text"].endswith("Anything else?\n")
    assert w.layout["apologise"] == (260, 420)


def test_source_map_points_at_nodes_and_config_keys():
    loaded = load(FIXTURE.read_text())
    assert loaded.node_position("lookup") == (19, 5)
    assert loaded.position(("nodes", 2, "config", "url")) == (23, 12)
    assert loaded.position(("nodes", 2, "config", "no_such_key")) == (22, 7)  # deepest known prefix
    assert loaded.node_position("ghost") == (1, 1)


def test_model_round_trip_keeps_edge_cases():
    w = Workflow(
        id="edge_cases",
        name="  leading: spaces # and a hash",
        description="line one\nline two\n",
        nodes=[
            Node(id="a", type="reply", config={"text": "yes", "n": "1.0", "null": None, "1e20": 1e20}),
            Node(id="b", type="x", policy=Policy()),  # all defaults: must not vanish
            Node(id="c", type="x", policy=Policy(timeout_s=5, backoff_s=0.25), max_visits=2, join="all"),
        ],
        edges=[Edge(source="a", target="b", when="a: b, {c}")],
        layout={"a": (-1, 2)},
    )
    text = dump(w)
    assert "policy: {}" in text and "timeout_s: 5\n" in text
    assert load(text).workflow == w
    assert dump(load(text).workflow) == text


# ------------------------------------------------------------------ hostile and malformed input


def load_error(text: str | bytes) -> tuple[str, int | None, int | None, str]:
    with pytest.raises(WorkflowLoadError) as info:
        load(text)
    issue = info.value.issues[0]
    return issue.code, issue.line, issue.col, issue.message


MINIMAL = "version: 1\nid: w\nname: W\nnodes:\n  - id: start\n    type: start\n"


def test_minimal_file_loads():
    assert load(MINIMAL).workflow.nodes[0].id == "start"


@pytest.mark.parametrize(
    ("text", "where"),
    [
        (FIXTURE.read_text()[: FIXTURE.read_text().index("to: find_order}") + 5], (59, 1)),  # cut in a {...}
        ('version: 1\nid: w\nname: "never closed\n', (4, 1)),
        ("version: 1\nid: w\nnodes:\n  - id: a\n   type: x\n", (5, 4)),  # the indentation is off
    ],
)
def test_truncated_or_broken_yaml_is_a_syntax_error(text, where):
    code, line, col, _ = load_error(text)
    assert (code, (line, col)) == ("YAML_SYNTAX", where)


def test_wrong_types_name_the_field_and_line():
    code, line, col, msg = load_error("version: 1\nid: w\nname: W\nnodes: 5\n")
    assert (code, line, col) == ("SCHEMA_INVALID", 4, 8) and msg.startswith("nodes:")
    text = MINIMAL + "  - id: b\n    type: reply\nedges:\n  - {from: start, to: b}\n  - {from: b}\n"
    with pytest.raises(WorkflowLoadError) as info:
        load(text)
    [issue] = info.value.issues
    assert issue.code == "SCHEMA_INVALID" and issue.message.startswith("edges.1.to:") and issue.line == 11
    code, line, _, msg = load_error("version: 1\nid: Not A Slug\nname: W\n")
    assert (code, line) == ("SCHEMA_INVALID", 2) and "slug" in msg
    code, line, _, msg = load_error(MINIMAL + "    max_visits: lots\n")
    assert (code, line) == ("SCHEMA_INVALID", 7) and "max_visits" in msg


@pytest.mark.parametrize("as_bytes", [False, True])
def test_50_mb_is_refused_before_parsing(as_bytes):
    # Not valid YAML after the first line: parsing it would give YAML_SYNTAX, not YAML_TOO_LARGE.
    text = "version: 1\n" + "[" * (50 * 1024 * 1024)
    code, _, _, msg = load_error(text.encode() if as_bytes else text)
    assert code == "YAML_TOO_LARGE" and str(MAX_BYTES) in msg


def test_billion_laughs_is_refused_at_the_first_alias():
    lol = 'version: 1\nid: w\nname: W\nnotes: &a "lol"\nconfig:\n  b: &b [*a, *a, *a, *a, *a, *a, *a, *a]\n'
    lol += "  c: &c [*b, *b, *b, *b, *b, *b, *b, *b]\n  d: [*c, *c, *c, *c, *c, *c, *c, *c]\n"
    assert load_error(lol)[:3] == ("YAML_ALIAS", 6, 10)  # the first *a
    assert load_error("a: &x {b: 1}\nc:\n  <<: *x\n")[0] == "YAML_ALIAS"


@pytest.mark.parametrize(
    "payload",
    [
        '!!python/object/apply:os.system ["touch {marker}"]',
        '!!python/object/new:subprocess.Popen [["touch", "{marker}"]]',
        "!!python/name:os.system",
        "!!python/object/apply:builtins.exec [\"open('{marker}', 'w')\"]",
    ],
)
def test_python_tags_are_refused_and_nothing_runs(payload, tmp_path):
    marker = tmp_path / "pwned"
    text = f"version: 1\nid: w\nname: W\nnotes: {payload.format(marker=marker)}\n"
    code, line, col, msg = load_error(text)
    assert (code, line, col) == ("YAML_TAG", 4, 8) and "python" in msg
    assert not marker.exists()


def test_other_tags_are_refused_but_plain_type_tags_are_fine():
    assert load_error("version: 1\nid: w\nname: !!binary aGk=\n")[0] == "YAML_TAG"
    assert load_error("version: 1\nid: w\nname: W\nnodes: !!set {a}\n")[0] == "YAML_TAG"
    assert load("version: 1\nid: w\nname: !!str 5\n").workflow.name == "5"


@pytest.mark.parametrize(
    "text",
    ["version: !!int abc\n", "version: 1\nid: w\nname: !!bool maybe\n", "version: 1" + "0" * 5000 + "\n"],
)
def test_bad_typed_scalars_are_coded_errors(text):
    code, line, _, _ = load_error(text)
    assert code == "YAML_VALUE" and line is not None


def test_duplicate_keys_point_at_the_second_one():
    assert load_error("version: 1\nid: w\nname: A\nname: B\n")[:3] == ("YAML_DUPLICATE_KEY", 4, 1)
    nested = MINIMAL + "    config: {a: 1, a: 2}\n"
    assert load_error(nested)[:2] == ("YAML_DUPLICATE_KEY", 7)


@pytest.mark.parametrize("depth", [MAX_DEPTH + 1, 5000, 200_000])
def test_deep_nesting_is_refused(depth):
    text = "version: 1\nid: w\nname: W\nnotes: " + "[" * depth + "]" * depth + "\n"
    assert load_error(text)[:2] == ("YAML_TOO_DEEP", 4)


def test_non_utf8_bytes():
    code, line, col, msg = load_error(b"version: 1\nname: caf\xe9\n")
    assert (code, line, col) == ("YAML_ENCODING", 2, 10) and "byte 20" in msg
    assert load(b"\xef\xbb\xbf" + MINIMAL.encode()).workflow.id == "w"  # a UTF-8 BOM is fine


@pytest.mark.parametrize("text", ["", "   \n\n", b"", "---\n", "# just a comment\n", "~\n"])
def test_empty_file(text):
    assert load_error(text)[0] == "YAML_EMPTY"


@pytest.mark.parametrize("text", ["- version: 1\n", "just text\n", "42\n"])
def test_top_level_must_be_a_mapping(text):
    assert load_error(text)[:2] == ("SCHEMA_NOT_MAPPING", 1)


def test_versions():
    code, line, col, msg = load_error("id: w\nname: W\nversion: 2\n")
    assert (code, line, col) == ("VERSION_UNSUPPORTED", 3, 10) and "version 2" in msg
    assert load_error("version: 0\nid: w\nname: W\n")[0] == "VERSION_UNSUPPORTED"
    assert load_error("version: '1'\nid: w\nname: W\n")[0] == "VERSION_INVALID"
    assert load_error("version: true\nid: w\nname: W\n")[0] == "VERSION_INVALID"
    assert load("id: w\nname: W\n").workflow.version == 1  # missing means the current version


def test_errors_format_as_file_line_col_code():
    with pytest.raises(WorkflowLoadError) as info:
        load("id: w\nname: W\nversion: 2\n", filename="flows/x.yaml")
    assert info.value.issues[0].format("flows/x.yaml").startswith("flows/x.yaml:3:10: VERSION_UNSUPPORTED ")
    assert "(fix: upgrade flowdesk)" in str(info.value)


def test_comments_are_dropped_with_a_warning_on_their_line():
    text = textwrap.dedent(
        """\
        version: 1
        id: w
        name: 'not # a comment'
        description: http://x.test/#frag
        nodes:
          - id: start   # the entry
            type: start
        # trailing note
        """
    )
    loaded = load(text)
    [warning] = loaded.warnings
    assert (warning.code, warning.severity, warning.line) == ("YAML_COMMENTS_DROPPED", "warning", 6)
    assert "2 comment line(s)" in warning.message
    assert loaded.workflow.name == "not # a comment"
    assert "#" not in dump(loaded.workflow).replace("not # a", "").replace("/#frag", "")
    assert load("version: 1\nid: w\nname: '# x'\n").warnings == []


def test_timestamps_and_other_yaml11_oddities_stay_text():
    text = MINIMAL + "    config:\n      day: 2024-01-01\n      at: 2024-01-01 10:00:00\n      eq: =\n"
    config = load(text).workflow.nodes[0].config
    assert config == {"day": "2024-01-01", "at": "2024-01-01 10:00:00", "eq": "="}
    assert "day: '2024-01-01'" in dump(load(text).workflow)


def test_parse_yaml_maps_paths_to_positions():
    data, source_map = parse_yaml("a:\n  b: [1, {c: x}]\n")
    assert data == {"a": {"b": [1, {"c": "x"}]}}
    assert source_map[("a", "b", 1, "c")] == (2, 14)


# ------------------------------------------------------------------ property tests

#: Strings YAML 1.1 likes to reinterpret, quote or fold.
TRICKY = [
    "", " ", " lead", "trail ", "a: b", "#hash", "a #b", "'q'", '"dq"', "1.0", "yes", "no", "null", "~",
    "true", "0x1F", "0o17", "1_000", "12:30", "2024-01-01", "=", "<<", "-", "- x", "? x", "!tag", "&a", "*a",
    "|", ">", "%", "@", "`", "{a: 1}", "[1]", "multi\nline", "multi\nline\n", "\n", "\nlead", "a\n\n\nb",
    " x\ny", "tab\there", "cr\rhere", "nel\x85x", "ls\u2028x", "bom\ufeffx", "\x00", "é€😀", "...", "---",
    "1e20", ".inf", "-.inf", ".nan", "+1", ".5", "0", "-0", "1.", "on", "off", "y", "n", "NULL", "x" * 200,
]  # fmt: skip

text = st.one_of(
    st.text(max_size=30),
    st.sampled_from(TRICKY),
    st.lists(st.sampled_from(TRICKY), min_size=2, max_size=3).map("".join),
)
scalar = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), text)
value = st.recursive(
    scalar,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(text, inner, max_size=4),
    max_leaves=12,
)
policy = st.builds(
    Policy,
    timeout_s=st.none() | st.floats(min_value=0.001, max_value=300),
    retries=st.integers(0, 10),
    backoff_s=st.floats(0, 60),
    default=value,
)
node = st.builds(
    Node,
    id=st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,12}", fullmatch=True),
    type=text,
    name=st.none() | text,
    notes=st.none() | text,
    config=st.dictionaries(text, value, max_size=4),
    policy=st.none() | policy,
    max_visits=st.none() | st.integers(1, 1000),
    join=st.sampled_from(["any", "all"]),
)
edge = st.builds(lambda s, t, w: Edge(source=s, target=t, when=w), text, text, st.none() | text)
workflows = st.builds(
    Workflow,
    id=st.from_regex(r"[a-z][a-z0-9_]{0,20}", fullmatch=True),
    name=text,
    description=text,
    notes=st.none() | text,
    nodes=st.lists(node, max_size=4),
    edges=st.lists(edge, max_size=4),
    layout=st.dictionaries(text, st.tuples(st.integers(), st.integers()), max_size=4),
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(workflows)
def test_property_dump_load_round_trip(w):
    text = dump(w)
    back = load(text).workflow
    assert back == w
    assert dump(back) == text


YAMLISH = st.lists(
    st.sampled_from(
        [
            "version: 1\n", "id: w\n", "name: ", "nodes:\n", "  - ", "id: a", "type: x", "\n", "    ",
            ": ", "- ", "[", "]", "{", "}", ",", "&a ", "*a", "!!int ", "!!python/object:os.system ", "!x ",
            "? ", "|", ">", "'", '"', "#", "---\n", "...\n", "%YAML 1.1\n", "\t", "~", "2024-01-01", "1" * 50,
            "<<: ", "=", "\\", "\x85", "\ufeff", "\x00", "é",
        ]
    ),
    max_size=40,
).map("".join)  # fmt: skip


@settings(max_examples=400, deadline=None)
@given(st.one_of(st.text(), st.binary(), YAMLISH, YAMLISH.map(str.encode)))
def test_property_load_only_raises_workflow_load_error(data):
    try:
        load(data)
    except WorkflowLoadError as e:
        assert e.issues and all(
            i.code.isupper() and set(i.code) <= set(string.ascii_uppercase + "_") for i in e.issues
        )
