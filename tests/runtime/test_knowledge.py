"""Retrieval: BM25 keyword scores, chunking, embedding and hybrid modes (the real MiniLM embedder)."""

from __future__ import annotations

import pytest

from runtime.knowledge import Document, chunk, index_for, search, tokenize

FAQ = [
    Document(
        id="shipping",
        title="Shipping times",
        text="Standard shipping takes 3-5 business days. "
        "Express shipping takes 1-2 business days and costs 9.90.",
    ),
    Document(
        id="returns",
        title="Returns and refunds",
        text="You can return any item within 30 days of "
        "delivery. Start a return from the orders page; the refund reaches your card in 5 days.",
    ),
    Document(id="payment", title="Payment methods", text="We accept Visa, Mastercard, PayPal and Apple Pay."),
    Document(
        id="password",
        title="Reset your password",
        text="Click 'Forgot password' on the login page and follow the link we email you.",
    ),
    Document(
        id="hours", title="Opening hours", text="Our support team answers Monday to Friday, 9:00-18:00."
    ),
]


def ids(passages):
    return [p.id for p in passages]


def test_tokenize_drops_stop_words_and_folds_plurals():
    assert tokenize("How do I return my Orders?") == ["return", "order"]
    assert tokenize("the deliveries") == ["delivery"]
    assert tokenize("I can't log in") == ["log"]


@pytest.mark.parametrize(
    "query, best",
    [
        ("how long does shipping take", "shipping"),
        ("can I send an item back for a refund", "returns"),
        ("do you accept paypal", "payment"),
        ("I forgot my password", "password"),
        ("when is support open? opening hours", "hours"),
    ],
)
def test_keyword_search_ranks_the_answering_document_first(query, best):
    found = search(FAQ, query, top_k=3, min_score=0.1)
    assert found and found[0].id == best


def test_unrelated_query_finds_nothing():
    assert search(FAQ, "what's the weather like in Paris", min_score=0.1) == []
    assert search(FAQ, "   ") == []
    assert search(FAQ, "the and of") == []  # only stop words


def test_scores_are_between_0_and_1_and_sorted():
    found = search(FAQ, "shipping refund password paypal", top_k=5)
    scores = [p.score for p in found]
    assert all(0 < s <= 1 for s in scores) and scores == sorted(scores, reverse=True)


def test_min_score_and_top_k_filter():
    everything = search(FAQ, "shipping refund days", top_k=5)
    assert len(everything) >= 2
    assert len(search(FAQ, "shipping refund days", top_k=1)) == 1
    cut = everything[0].score - 1e-6
    assert ids(search(FAQ, "shipping refund days", top_k=5, min_score=cut)) == [everything[0].id]


def test_full_coverage_scores_about_one():
    assert search(FAQ, "paypal")[0].score == pytest.approx(1.0, abs=0.15)


def test_long_documents_are_chunked_and_each_document_appears_once():
    filler = " ".join(f"word{i}" for i in range(300))
    doc = Document(
        id="long", title="Warranty", text=f"{filler}\n\nThe warranty lasts two years for electronics."
    )
    pieces = chunk(doc)
    assert len(pieces) >= 3 and all(len(p.split()) <= 120 for p in pieces)
    found = search([doc, *FAQ], "how long is the warranty on electronics", top_k=5)
    assert ids(found).count("long") == 1
    assert "two years" in found[0].text  # the best chunk, not the whole document


def test_index_is_built_once_per_document_set():
    assert index_for(FAQ) is index_for(list(FAQ))
    changed = [*FAQ[:-1], Document(id="hours", title="Opening hours", text="Always open.")]
    assert index_for(changed) is not index_for(FAQ)


def test_embedding_mode_finds_paraphrases_keywords_miss():
    query = "how fast do you deliver"
    assert search(FAQ, query, min_score=0.2) == []
    found = search(FAQ, query, mode="embedding", top_k=2)
    assert found and found[0].id == "shipping" and 0 < found[0].score <= 1


def test_hybrid_mode_combines_both():
    found = search(FAQ, "how do I pay, is apple pay ok", mode="hybrid", top_k=3)
    kw = {p.id: p.score for p in search(FAQ, "how do I pay, is apple pay ok", top_k=5)}
    emb = {p.id: p.score for p in search(FAQ, "how do I pay, is apple pay ok", mode="embedding", top_k=5)}
    assert found[0].id == "payment"
    assert found[0].score == pytest.approx((kw["payment"] + emb["payment"]) / 2, abs=1e-3)


def test_unknown_query_words_lower_the_keyword_score():
    assert search(FAQ, "paypal")[0].score > search(FAQ, "paypal bitcoin dogecoin")[0].score
