"""Retrieval over a small document set: BM25 keywords, embeddings, or both (pure; no I/O).

Documents are split into paragraph chunks of at most ``CHUNK_WORDS`` words; a chunk is
indexed with its document's title (titles say what a passage is about). Each document
appears at most once in the results, with its best chunk.

Scores are in [0, 1] so that one ``min_score`` means the same thing in every mode:

* keyword: BM25 divided by the query's own weight — the IDFs of its terms — so roughly "how
  much of the query this chunk covers" (1.0 = every term once in a chunk of average length).
  A query term the documents never use weighs half the largest IDF: enough that "weather in
  Paris" finds nothing, not so much that one filler word sinks a good match.
* embedding: cosine similarity (clipped at 0) of ``runtime.embedder`` vectors.
* hybrid: the mean of the two.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

Mode = Literal["keyword", "embedding", "hybrid"]
CHUNK_WORDS = 120
K1 = 1.2
B = 0.75
UNKNOWN_WEIGHT = 0.5
TOKEN_RE = re.compile(r"[a-z0-9]+")
#: Function words and chat filler ("can you tell me", "I want to know"); matching them says nothing.
STOP_WORDS = frozenset(
    """a about above after again all am an and any are as at be because been before being below
    between both but by can could did do does doing down during each few for from further had has
    have having he her here hers him his how i if in into is it its itself just me more most my
    no nor not of off on once only or other our ours out over own same she should so some such
    than that the their theirs them then there these they this those through to too under until
    up very was we were what when where which while who whom why will with would you your yours
    yourself hi hello hey please thanks thank im ive id dont cant wont want need know tell like get take
    also""".split()  # noqa: SIM905 - a word list reads better as text
)


class Document(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    id: str = Field(min_length=1, max_length=100, description="Stable id of the document.")
    title: str = Field(min_length=1, max_length=300, description="What the document is about.")
    text: str = Field(min_length=1, max_length=20_000, description="The content to retrieve from.")


@dataclass(frozen=True)
class Passage:
    id: str
    title: str
    text: str
    score: float

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "title": self.title, "text": self.text, "score": round(self.score, 4)}


def _stem(word: str) -> str:
    # Plural folding only: enough for "orders"/"order", "returns"/"return" without a stemmer.
    if len(word) > 4 and word.endswith("ies"):
        return word[:-3] + "y"
    if len(word) > 3 and word.endswith("s") and not word.endswith(("ss", "us", "is")):
        return word[:-1]
    return word


def tokenize(text: str) -> list[str]:
    words = TOKEN_RE.findall(text.lower().replace("'", ""))
    return [_stem(w) for w in words if w not in STOP_WORDS]


def chunk(doc: Document, max_words: int = CHUNK_WORDS) -> list[str]:
    """Paragraphs, merged while short and split when longer than ``max_words``."""
    out: list[str] = []
    for para in (p.strip() for p in re.split(r"\n\s*\n", doc.text)):
        words = para.split()
        for i in range(0, len(words), max_words):
            piece = " ".join(words[i : i + max_words])
            if out and len(out[-1].split()) + len(piece.split()) <= max_words // 2:
                out[-1] = f"{out[-1]} {piece}"
            elif piece:
                out.append(piece)
    return out or [doc.text.strip()]


class Index:
    """BM25 over (title + chunk) for one document set."""

    def __init__(self, docs: list[Document]) -> None:
        self.docs = docs
        self.chunks: list[tuple[int, str]] = [(i, c) for i, d in enumerate(docs) for c in chunk(d)]
        self.tfs = [Counter(tokenize(f"{docs[i].title}\n{c}")) for i, c in self.chunks]
        self.lengths = [sum(tf.values()) for tf in self.tfs]
        self.avg_len = (sum(self.lengths) / len(self.lengths)) if self.lengths else 0.0
        df: Counter[str] = Counter(t for tf in self.tfs for t in tf)
        n = len(self.tfs)
        self.idf = {t: math.log(1 + (n - f + 0.5) / (f + 0.5)) for t, f in df.items()}
        self._vectors: Any = None
        self._embedder: Any = None

    def keyword_scores(self, query: str) -> np.ndarray:
        words = list(dict.fromkeys(tokenize(query)))
        terms = [t for t in words if t in self.idf]
        scores = np.zeros(len(self.tfs))
        if not terms:
            return scores
        # A word the documents never use counts half as much as the rarest known word.
        unknown = (len(words) - len(terms)) * UNKNOWN_WEIGHT * max(self.idf.values())
        norm = sum(self.idf[t] for t in terms) + unknown
        for j, tf in enumerate(self.tfs):
            denom_len = K1 * (1 - B + B * self.lengths[j] / (self.avg_len or 1))
            scores[j] = sum(self.idf[t] * tf[t] * (K1 + 1) / (tf[t] + denom_len) for t in terms if t in tf)
        return np.clip(scores / norm, 0.0, 1.0)

    def embedding_scores(self, query: str) -> np.ndarray:
        if self._vectors is None:
            from runtime.embedder import get_embedder

            texts = [f"{self.docs[i].title}: {c}" for i, c in self.chunks]
            self._embedder = get_embedder().fit(texts)
            self._vectors = self._embedder.embed(texts)
        q = self._embedder.embed([query])
        sims = q @ self._vectors.T
        sims = np.asarray(sims.toarray() if hasattr(sims, "toarray") else sims).ravel()
        return np.clip(sims, 0.0, 1.0)

    def search(
        self, query: str, *, top_k: int = 3, min_score: float = 0.0, mode: Mode = "keyword"
    ) -> list[Passage]:
        if not query.strip() or not self.chunks:
            return []
        if mode == "keyword":
            scores = self.keyword_scores(query)
        elif mode == "embedding":
            scores = self.embedding_scores(query)
        else:
            scores = (self.keyword_scores(query) + self.embedding_scores(query)) / 2
        best: dict[int, tuple[float, str]] = {}
        for j, (doc_i, text) in enumerate(self.chunks):
            s = float(scores[j])
            if s >= min_score and s > 0 and s > best.get(doc_i, (-1.0, ""))[0]:
                best[doc_i] = (s, text)
        ranked = sorted(best.items(), key=lambda kv: (-kv[1][0], kv[0]))[:top_k]
        return [Passage(self.docs[i].id, self.docs[i].title, text, s) for i, (s, text) in ranked]


@lru_cache(maxsize=128)
def _index(docs: tuple[Document, ...]) -> Index:
    return Index(list(docs))


def index_for(docs: list[Document] | tuple[Document, ...]) -> Index:
    """The index of a document set, built once per content (a workflow's documents rarely change)."""
    return _index(tuple(docs))


def search(
    docs: list[Document] | tuple[Document, ...],
    query: str,
    *,
    top_k: int = 3,
    min_score: float = 0.0,
    mode: Mode = "keyword",
) -> list[Passage]:
    return index_for(docs).search(query, top_k=top_k, min_score=min_score, mode=mode)
