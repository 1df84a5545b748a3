"""Stored workflows over REST: save/publish/versions/diff/rollback/export, ETags, bad YAML, limits."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from builder.yaml_io import dump, load
from tests.app.conftest import BROKEN_GRAPH, Api, valid_yaml

pytestmark = pytest.mark.usefixtures("engine")


def test_create_then_update_answers_201_then_200_with_etag(tenant: Callable[..., Api]) -> None:
    a = tenant()
    r = a.push(valid_yaml())
    assert r.status_code == 201, r.text
    body = r.json()
    assert {"id", "etag", "status", "issues"} <= set(body)
    assert (body["id"], body["status"], body["issues"]) == ("hello", "draft", [])
    assert r.headers["ETag"] == f'"{body["etag"]}"'
    assert r.headers["RateLimit-Limit"] and r.headers["RateLimit-Remaining"] and r.headers["RateLimit-Reset"]

    r2 = a.push(valid_yaml(text="Hello again"), headers={"If-Match": r.headers["ETag"]})
    assert r2.status_code == 200, r2.text
    assert r2.json()["etag"] != body["etag"]

    listed = a.get("/workflows").json()["workflows"]
    assert [w["id"] for w in listed] == ["hello"]

    got = a.get("/workflows/hello")
    assert got.status_code == 200
    out = got.json()
    assert {"id", "yaml", "status", "issues", "versions"} <= set(out)
    assert "Hello again" in out["yaml"] and out["versions"] == []
    assert got.headers["ETag"] == r2.headers["ETag"]


@pytest.mark.parametrize("ctype", ["text/plain", "text/yaml", "application/yaml; charset=utf-8"])
def test_yaml_content_types_accepted(tenant: Callable[..., Api], ctype: str) -> None:
    a = tenant()
    r = a.push(valid_yaml(), headers={"Content-Type": ctype})
    assert r.status_code == 201, r.text


def test_other_content_type_refused_and_nothing_saved(tenant: Callable[..., Api]) -> None:
    a = tenant()
    r = a.push(valid_yaml(), headers={"Content-Type": "application/json"})
    assert r.status_code == 415
    assert r.json()["error"]["code"] == "unsupported_media_type"
    assert a.get("/workflows").json()["workflows"] == []


def test_stale_if_match_is_409_and_changes_nothing(tenant: Callable[..., Api]) -> None:
    a = tenant()
    first = a.push(valid_yaml()).headers["ETag"]
    a.push(valid_yaml(text="v2"), headers={"If-Match": first})
    r = a.push(valid_yaml(text="v3"), headers={"If-Match": first})
    assert r.status_code == 409
    assert r.json()["error"]["code"] == "etag_mismatch"
    assert "v3" not in a.get("/workflows/hello").json()["yaml"]
    # Publishing with a stale ETag is refused the same way.
    assert a.post("/workflows/hello/publish", headers={"If-Match": first}).status_code == 409
    assert a.get("/workflows/hello/versions").json()["versions"] == []


def test_publish_refused_while_errors_then_allowed(tenant: Callable[..., Api]) -> None:
    a = tenant()
    r = a.push(BROKEN_GRAPH.format(id="flow"))
    assert r.status_code == 201
    assert any(i["severity"] == "error" for i in r.json()["issues"])
    refused = a.post("/workflows/flow/publish")
    assert refused.status_code == 409
    err = refused.json()["error"]
    assert err["code"] == "workflow_invalid" and err["issues"]
    assert a.get("/workflows/flow/versions").json()["versions"] == []

    etag = a.push(valid_yaml("flow")).headers["ETag"]
    ok = a.post("/workflows/flow/publish", headers={"If-Match": etag})
    assert ok.status_code == 200, ok.text
    assert ok.json()["version"]["number"] == 1
    assert a.get("/workflows/flow").json()["status"] == "published"


def test_versions_diff_rollback_export_round_trip(tenant: Callable[..., Api]) -> None:
    a = tenant()
    a.push(valid_yaml(text="One"))
    assert a.post("/workflows/hello/publish").json()["version"]["number"] == 1
    a.push(valid_yaml(text="Two"))
    assert a.post("/workflows/hello/publish").json()["version"]["number"] == 2

    versions = a.get("/workflows/hello/versions").json()
    assert [v["number"] for v in versions["versions"]] == [1, 2]
    assert versions["published_version"] == 2

    d = a.get("/workflows/hello/diff", params={"from": 1, "to": 2})
    assert d.status_code == 200
    text = d.json()["diff"]
    assert "-      text: One" in text and "+      text: Two" in text

    v1 = a.get("/workflows/hello/export", params={"version": 1})
    assert v1.status_code == 200 and v1.headers["content-type"].startswith("application/yaml")
    assert v1.text == dump(load(valid_yaml(text="One")).workflow)  # canonical

    rb = a.post("/workflows/hello/rollback", json={"version": 1})
    assert rb.status_code == 200, rb.text
    assert rb.json()["version"]["number"] == 3
    draft = a.get("/workflows/hello/export")
    assert draft.text == v1.text
    assert a.get("/workflows/hello/export", params={"version": 3}).text == v1.text
    assert a.get("/workflows/hello/diff", params={"from": 1, "to": 3}).json()["diff"] == ""

    # Unknown version numbers are 404s, not 500s.
    assert a.get("/workflows/hello/export", params={"version": 99}).status_code == 404
    assert a.post("/workflows/hello/rollback", json={"version": 99}).status_code == 404
    assert a.get("/workflows/hello/diff", params={"from": 1, "to": 99}).status_code == 404


def test_delete_workflow(tenant: Callable[..., Api]) -> None:
    a = tenant()
    a.push(valid_yaml())
    a.post("/workflows/hello/publish")
    r = a.call("DELETE", "/workflows/hello")
    assert r.status_code == 204
    assert a.get("/workflows/hello").status_code == 404
    assert a.call("DELETE", "/workflows/hello").status_code == 404
    actions = [e["action"] for e in a.get("/audit").json()["entries"]]
    assert {"workflow.create", "workflow.publish", "workflow.delete"} <= set(actions)


@pytest.mark.parametrize(
    ("text", "line"),
    [
        ("version: 1\nid: x\nname: [unclosed\n", 3),
        ("version: 1\nid: x\nnodes:\n  - id: a\n   type: start\n", 5),
        ("version: 1\nid: x\nnodes: {}\nedges: 7\n", 3),
    ],
)
def test_unparseable_yaml_is_422_with_line_and_nothing_saved(
    tenant: Callable[..., Api], text: str, line: int
) -> None:
    a = tenant()
    r = a.push(text)
    assert r.status_code == 422, r.text
    err = r.json()["error"]
    assert err["code"] == "yaml_invalid"
    assert "line " in err["message"]
    assert err["issues"] and all("line" in i for i in err["issues"])
    assert a.get("/workflows").json()["workflows"] == []


@pytest.mark.parametrize("body", [b"", b"\xff\xfe\x00garbage", b"- just\n- a list\n"])
def test_empty_binary_or_non_mapping_body_is_422(tenant: Callable[..., Api], body: bytes) -> None:
    a = tenant()
    r = a.call("POST", "/workflows", content=body, headers={"Content-Type": "application/yaml"})
    assert r.status_code == 422, r.text
    assert r.json()["error"]["code"]
    assert a.get("/workflows").json()["workflows"] == []


def test_huge_yaml_is_413_before_parsing(tenant: Callable[..., Api]) -> None:
    a = tenant()
    huge = valid_yaml() + "description: " + "x" * (2 * 1024 * 1024) + "\n"
    r = a.push(huge)
    assert r.status_code == 413
    assert r.json()["error"]["code"] == "too_large"
    assert a.get("/workflows").json()["workflows"] == []


def test_huge_chunked_body_without_length_is_413(tenant: Callable[..., Api]) -> None:
    a = tenant()

    def chunks():  # a generator body is sent chunked, without Content-Length
        for _ in range(40):
            yield b"#" * 65536

    r = a.call("POST", "/workflows", content=chunks(), headers={"Content-Type": "application/yaml"})
    assert r.status_code == 413
    assert a.get("/workflows").json()["workflows"] == []


def test_free_plan_fourth_workflow_is_402(tenant: Callable[..., Api]) -> None:
    a = tenant(plan="free")
    for n in range(3):
        assert a.push(valid_yaml(f"wf{n}")).status_code == 201
    r = a.push(valid_yaml("wf3"))
    assert r.status_code == 402
    err = r.json()["error"]
    assert err["code"] == "plan_limit" and err["limit"] == 3 and err["current"] == 3
    assert len(a.get("/workflows").json()["workflows"]) == 3
    # Updating an existing one is not creating: still allowed.
    assert a.push(valid_yaml("wf0", text="changed")).status_code == 200
    usage = {u["name"]: u for u in a.get("/plan").json()["usage"]}
    assert usage["workflows"]["current"] == 3 and usage["workflows"]["limit"] == 3


def test_injection_strings_in_names_are_stored_as_data(tenant: Callable[..., Api]) -> None:
    a = tenant()
    name = "'; DROP TABLE workflows; -- <script>alert(1)</script>"
    r = a.push(valid_yaml(name=f'"{name}"'))
    assert r.status_code == 201, r.text
    assert a.get("/workflows/hello").json()["name"] == name
    # A slug-shaped injection in the path is just an unknown id.
    assert a.get("/workflows/x' OR '1'='1").status_code == 404
    assert len(a.get("/workflows").json()["workflows"]) == 1


def test_diff_and_export_wrong_types_are_422(tenant: Callable[..., Api]) -> None:
    a = tenant()
    a.push(valid_yaml())
    r = a.get("/workflows/hello/diff", params={"from": "one"})
    assert r.status_code == 422
    assert r.json()["error"]["code"] == "invalid_request"
    assert a.get("/workflows/hello/export", params={"version": 0}).status_code == 422
    for bad in ({"version": "1"}, {"version": None}, {}, {"version": 1, "tenant_id": "x"}, [1]):
        rb = a.post("/workflows/hello/rollback", json=bad)
        assert rb.status_code == 422, (bad, rb.text)
        assert rb.json()["error"]["code"] == "invalid_request"
