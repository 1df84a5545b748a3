"""The MiniLM int8 ONNX embedder, its hash checks, and the TF-IDF degraded mode."""

from __future__ import annotations

import logging

import numpy as np
import pytest

from runtime.embedder import (
    TOKENIZER_PATH,
    EmbedderError,
    MiniLMEmbedder,
    TfidfEmbedder,
    get_embedder,
    load_embedder,
    verify_sha256,
)


@pytest.fixture(scope="module")
def minilm() -> MiniLMEmbedder:
    emb = get_embedder()
    assert isinstance(emb, MiniLMEmbedder), "the MiniLM model must load in the test environment"
    return emb


def test_shapes_and_unit_norm(minilm: MiniLMEmbedder) -> None:
    texts = ["where is my order", "I want a refund for the broken kettle", "hi"]
    v = minilm.embed(texts)
    assert v.shape == (3, 384)
    assert v.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(v, axis=1), 1.0, atol=1e-5)
    assert minilm.embed([]).shape == (0, 384)


def test_deterministic_and_batch_independent(minilm: MiniLMEmbedder) -> None:
    texts = ["my package never arrived", "can I talk to a person", "a much longer message " * 20]
    fresh = MiniLMEmbedder(cache_size=0)  # no cache: every call really runs the model
    batch = fresh.embed(texts)
    one_by_one = np.vstack([fresh.embed([t]) for t in texts])
    again = fresh.embed(texts)
    # Padding to the batch's longest must not change a row (mean pooling respects the mask).
    np.testing.assert_allclose(batch, one_by_one, atol=1e-4)
    np.testing.assert_array_equal(batch, again)
    np.testing.assert_allclose(minilm.embed(texts), batch, atol=1e-4)


def test_semantics_are_sane(minilm: MiniLMEmbedder) -> None:
    a, b, c = minilm.embed(["where is my parcel", "my package has not arrived yet", "the capital of France"])
    assert float(a @ b) > float(a @ c) + 0.2


def test_lru_cache_hits_repeated_texts() -> None:
    emb = MiniLMEmbedder(cache_size=4)
    emb.embed(["hello there"])
    before = emb.cache_stats
    v1 = emb.embed(["hello there"])
    after = emb.cache_stats
    assert after["hits"] == before["hits"] + 1
    assert after["misses"] == before["misses"]
    emb.embed([f"text {i}" for i in range(5)])  # evicts "hello there"
    emb.embed(["hello there"])
    assert emb.cache_stats["misses"] == after["misses"] + 6
    np.testing.assert_allclose(emb.embed(["hello there"]), v1, atol=1e-6)


def test_model_sha_mismatch_refuses_to_load(tmp_path) -> None:
    fake = tmp_path / "model.onnx"
    fake.write_bytes(b"not the model")
    with pytest.raises(EmbedderError, match="sha256"):
        MiniLMEmbedder(model_path=fake)


def test_tokenizer_sha_mismatch_refuses_to_load(tmp_path) -> None:
    tok = tmp_path / "tokenizer.json"
    tok.write_text(TOKENIZER_PATH.read_text(encoding="utf-8").replace("[UNK]", "[UNK2]", 1), encoding="utf-8")
    with pytest.raises(EmbedderError, match="sha256"):
        MiniLMEmbedder(tokenizer_path=tok)


def test_missing_file_is_an_error(tmp_path) -> None:
    with pytest.raises(EmbedderError, match="does not exist"):
        verify_sha256(tmp_path / "nope.onnx", "00")


def test_unloadable_model_degrades_to_tfidf_loudly(tmp_path, caplog) -> None:
    fake = tmp_path / "model.onnx"
    fake.write_bytes(b"garbage")
    with caplog.at_level(logging.ERROR, logger="flowdesk.router.embedder"):
        emb = load_embedder("minilm", model_path=fake)
    assert isinstance(emb, TfidfEmbedder)
    assert emb.degraded
    assert any("ROUTER DEGRADED" in r.getMessage() for r in caplog.records)


def test_settings_select_tfidf() -> None:
    assert isinstance(load_embedder("tfidf"), TfidfEmbedder)


def test_tfidf_fit_and_embed() -> None:
    base = TfidfEmbedder()
    with pytest.raises(EmbedderError, match="before fit"):
        base.embed(["x"])
    fitted = base.fit(["where is my order", "refund please", "hello"])
    v = fitted.embed(["where is my order", "refund my order"])
    assert v.shape[0] == 2
    norms = np.sqrt(np.asarray(v.multiply(v).sum(axis=1))).ravel()
    np.testing.assert_allclose(norms, 1.0, atol=1e-5)
    sims = (v @ fitted.embed(["where is my order"]).T).toarray().ravel()
    assert sims[0] == pytest.approx(1.0, abs=1e-5)
    assert sims[1] < sims[0]
