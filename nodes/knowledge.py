"""``knowledge``: find the passages of a small document set that answer the message
(keyword BM25, embeddings, or both); an ``llm`` node can ground its answer on them."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator

from builder.template import render
from nodes.base import NodeConfig, NodeInput, NodeResult, NodeType
from runtime.context import RunContext
from runtime.knowledge import Document, search

NOT_FOUND = "not_found"


class Config(NodeConfig):
    documents: list[Document] = Field(
        min_length=1,
        max_length=500,
        description="The documents to search (id, title, text), shipped with the workflow.",
    )
    query: str = Field(
        default="{{ message }}", min_length=1, max_length=2000, description="What to search for."
    )
    top_k: int = Field(default=3, ge=1, le=20, description="At most this many passages.")
    min_score: float = Field(
        default=0.2,
        ge=0.0,
        le=1.0,
        description="Passages scoring below this (0-1) are dropped; none left takes not_found.",
    )
    mode: Literal["keyword", "embedding", "hybrid"] = Field(
        default="keyword", description="keyword = BM25; embedding = sentence vectors; hybrid = both."
    )

    @field_validator("documents")
    @classmethod
    def _unique_ids(cls, v: list[Document]) -> list[Document]:
        ids = [d.id for d in v]
        dupes = sorted({i for i in ids if ids.count(i) > 1})
        if dupes:
            raise ValueError(f"document ids must be unique; repeated: {', '.join(dupes)}")
        return v


def run(cfg: Config, inp: NodeInput, ctx: RunContext) -> NodeResult:
    query = render(cfg.query, inp.vars)
    passages = search(cfg.documents, query, top_k=cfg.top_k, min_score=cfg.min_score, mode=cfg.mode)
    value = {
        "query": query,
        "passages": [p.to_dict() for p in passages],
        # Self-contained for a reply or a prompt: "Title: passage" paragraphs.
        "text": "\n\n".join(f"{p.title}: {p.text}" for p in passages),
    }
    ctx.emit(
        "knowledge_searched",
        mode=cfg.mode,
        found=len(passages),
        top=[[p.id, round(p.score, 4)] for p in passages],
    )
    return NodeResult(value=value, output=None if passages else NOT_FOUND)


NODE = NodeType(
    type="knowledge",
    title="Knowledge search",
    group="AI",
    icon="book-open",
    config=Config,
    run=run,
    description=__doc__ or "",
    outputs=lambda cfg: [NOT_FOUND],
)
