"""Conversation tests over REST (GET/PUT/DELETE /workflows/{slug}/tests) and the publish gate."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from tests.app.conftest import Api, valid_yaml

pytestmark = pytest.mark.usefixtures("engine")

TESTS = """\
version: 1
workflow: hello
cases:
  - name: says hi
    turns:
      - user: hello there
        expect:
          intent: none
          path_includes: [start, hi]
          reply_contains: [{fragment}]
"""


def put_tests(a: Api, text: str, slug: str = "hello", ctype: str = "application/yaml", **kw):
    return a.call(
        "PUT", f"/workflows/{slug}/tests", content=text.encode(), headers={"Content-Type": ctype}, **kw
    )


def test_put_get_delete_round_trip(tenant: Callable[..., Api]) -> None:
    a = tenant()
    assert a.push(valid_yaml()).status_code == 201
    r = a.get("/workflows/hello/tests")
    assert r.status_code == 404 and r.json()["error"]["code"] == "tests_not_found"

    r = put_tests(a, "# my tests\n" + TESTS.format(fragment="Hi"))
    assert r.status_code == 200, r.text
    assert r.json() == {"id": "hello", "cases": 1}
    got = a.get("/workflows/hello/tests")
    assert got.status_code == 200 and got.headers["content-type"].startswith("application/yaml")
    assert got.text == TESTS.format(fragment="Hi")  # stored canonical: the comment is gone

    assert a.call("DELETE", "/workflows/hello/tests").status_code == 204
    assert a.get("/workflows/hello/tests").status_code == 404


def test_bad_tests_are_refused_with_codes_and_lines(tenant: Callable[..., Api]) -> None:
    a = tenant()
    a.push(valid_yaml())
    r = put_tests(a, TESTS.format(fragment="Hi"), ctype="application/json")
    assert r.status_code == 415 and r.json()["error"]["code"] == "unsupported_media_type"

    r = put_tests(a, TESTS.format(fragment="Hi").replace("user:", "usr:"))
    assert r.status_code == 422
    err = r.json()["error"]
    assert err["code"] == "tests_invalid" and err["message"].startswith("line 6, column")
    assert err["issues"][0]["line"] == 6

    r = put_tests(a, "workflow: !!python/object/apply:os.system [id]\n")
    assert r.status_code == 422 and r.json()["error"]["issues"][0]["code"] == "YAML_TAG"

    r = put_tests(a, TESTS.format(fragment="Hi").replace("workflow: hello", "workflow: other"))
    assert r.status_code == 422 and r.json()["error"]["code"] == "tests_workflow_mismatch"

    assert put_tests(a, "  \n").json()["error"]["code"] == "tests_empty"
    assert put_tests(a, TESTS.format(fragment="Hi"), slug="nope").status_code == 404
    assert a.get("/workflows/hello/tests").status_code == 404  # nothing was stored


def test_reading_needs_read_scope_and_writing_write_scope(tenant: Callable[..., Api]) -> None:
    a = tenant()
    a.push(valid_yaml())
    put_tests(a, TESTS.format(fragment="Hi"))
    reader = a.key_with("workflows:read")
    assert a.get("/workflows/hello/tests", key=reader).status_code == 200
    assert put_tests(a, TESTS.format(fragment="Hi"), key=reader).status_code == 403


def test_other_tenants_tests_are_invisible(tenant: Callable[..., Api]) -> None:
    a, b = tenant("A"), tenant("B")
    a.push(valid_yaml())
    put_tests(a, TESTS.format(fragment="Hi"))
    assert b.get("/workflows/hello/tests").status_code == 404
    assert put_tests(b, TESTS.format(fragment="Hi")).status_code == 404


def test_publish_is_refused_while_a_test_fails(tenant: Callable[..., Api]) -> None:
    a = tenant()
    a.push(valid_yaml(text="Hi"))
    put_tests(a, TESTS.format(fragment="Goodbye"))
    r = a.post("/workflows/hello/publish")
    assert r.status_code == 409, r.text
    err = r.json()["error"]
    assert err["code"] == "tests_failed"
    assert "1 of 1 conversation test(s)" in err["message"]
    assert err["failures"] == ["says hi / turn 1: reply: expected to contain 'Goodbye', got 'Hi'"]
    assert a.get("/workflows/hello/versions").json()["versions"] == []  # nothing published

    # Fix the flow (not the test): the same tests now pass and publishing goes through.
    a.push(valid_yaml(text="Goodbye"))
    r = a.post("/workflows/hello/publish")
    assert r.status_code == 200, r.text
    assert r.json()["version"]["number"] == 1


def test_publish_without_tests_is_not_gated(tenant: Callable[..., Api]) -> None:
    a = tenant()
    a.push(valid_yaml())
    assert a.post("/workflows/hello/publish").status_code == 200
