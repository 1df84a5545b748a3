"""builder.template: substitution only, escaped for where the value lands."""

from __future__ import annotations

import pytest

from builder.template import (
    MISSING,
    lookup,
    references,
    render,
    render_value,
    resolve_refs,
    strings_in,
    syntax_errors,
    variables,
)

VALUES = {
    "order_id": "48213",
    "qty": 3,
    "ok": True,
    "no": False,
    "nothing": None,
    "lookup": {"body": {"status": "shipped", "items": [{"sku": "A-1"}, {"sku": "B 2"}]}},
    "name": 'Zoë <b>"Q"</b> & co/1?x=1',
}


def test_variables_lists_paths_in_order():
    assert variables("{{ a }} x {{b.c.0}} {{ a }} {{ a + b }}") == ["a", "b.c.0", "a"]


def test_substitution_of_paths_lists_and_missing_values():
    assert render("Order {{ order_id }} is {{ lookup.body.status }}.", VALUES) == "Order 48213 is shipped."
    assert render("{{lookup.body.items.1.sku}}", VALUES) == "B 2"
    assert render("[{{ missing.deep }}][{{ nothing }}][{{ lookup.body.items.9 }}]", VALUES) == "[][][]"
    assert render("{{ ok }}/{{ no }}/{{ qty }}", VALUES) == "yes/no/3"
    assert render("{{ lookup.body.items.0 }}", VALUES) == '{"sku": "A-1"}'


def test_only_plain_paths_are_substituted():
    assert render("{{ a + b }} {{ f(x) }} {{ qty }}", VALUES) == "{{ a + b }} {{ f(x) }} 3"


def test_lookup():
    assert lookup(VALUES, "lookup.body.items.0.sku") == "A-1"
    assert lookup(VALUES, "lookup.body.items.x") is MISSING
    assert lookup(VALUES, "qty.more") is MISSING
    assert lookup(VALUES, "nothing") is None


@pytest.mark.parametrize(
    ("escape", "expected"),
    [
        ("text", 'Zoë <b>"Q"</b> & co/1?x=1'),
        ("url", "Zo%C3%AB%20%3Cb%3E%22Q%22%3C%2Fb%3E%20%26%20co%2F1%3Fx%3D1"),
        ("html", "Zoë &lt;b&gt;&quot;Q&quot;&lt;/b&gt; &amp; co/1?x=1"),
        ("json", 'Zo\\u00eb <b>\\"Q\\"</b> & co/1?x=1'),
    ],
)
def test_escaping(escape, expected):
    assert render("{{ name }}", VALUES, escape) == expected


def test_json_escaping_keeps_a_json_document_valid():
    import json

    doc = render('{"note": "{{ text }}"}', {"text": 'say "hi"\nand \\ bye'}, "json")
    assert json.loads(doc) == {"note": 'say "hi"\nand \\ bye'}


def test_url_escaping_cannot_change_the_path():
    url = render("https://api.test/orders/{{ id }}", {"id": "../admin?x=1#"}, "url")
    assert url == "https://api.test/orders/..%2Fadmin%3Fx%3D1%23"


def test_a_single_template_keeps_the_value_type():
    assert render_value("{{ qty }}", VALUES) == 3
    assert render_value("  {{ ok }} ", VALUES) is True
    assert render_value("{{ lookup.body.items }}", VALUES) == [{"sku": "A-1"}, {"sku": "B 2"}]
    assert render_value("{{ missing }}", VALUES) is None
    assert render_value("qty: {{ qty }}", VALUES) == "qty: 3"
    nested = {"a": ["{{ qty }}", {"b": "#{{ order_id }}"}], "n": 7, "f": None}
    assert render_value(nested, VALUES) == {"a": [3, {"b": "#48213"}], "n": 7, "f": None}
    assert render_value("{{ qty }}", VALUES, "url") == "3"  # escaped output is always text


@pytest.mark.parametrize(
    "text",
    ["{{ a + b }}", "{{ f(x) }}", "{{ }}", "{{ a | upper }}", "{{ __import__('os') }}", "{{ a[0] }}"],
)
def test_syntax_errors_for_logic_in_templates(text):
    [msg] = syntax_errors(text)
    assert "not a plain variable path" in msg


@pytest.mark.parametrize("text", ["${env:HOME}", "${HOME}", "${secret:}", "${config:A-B}", "${secret:A:B}"])
def test_syntax_errors_for_unknown_references(text):
    [msg] = syntax_errors(text)
    assert "not a reference" in msg and "${secret:NAME}" in msg


def test_no_syntax_errors_for_plain_paths_references_and_text():
    text = "Hi {{ user.name }} {{x}} ${secret:CRM_TOKEN} ${config:ORDERS_API} {a} $HOME {{"
    assert syntax_errors(text) == []
    assert syntax_errors("") == []


def test_references_and_resolution():
    text = "${config:ORDERS_API}/orders?key=${secret:CRM_TOKEN}&q={{ q }}"
    assert references(text) == [("config", "ORDERS_API"), ("secret", "CRM_TOKEN")]
    resolved = resolve_refs(text, lambda kind, name: f"<{kind}.{name}>")
    assert resolved == "<config.ORDERS_API>/orders?key=<secret.CRM_TOKEN>&q={{ q }}"
    assert resolve_refs("${env:HOME}", lambda k, n: "x") == "${env:HOME}"  # never read


def test_strings_in_walks_nested_values():
    assert strings_in({"a": ["x", {"b": "y"}, 3, None], "c": "z", "d": True}) == ["x", "y", "z"]
