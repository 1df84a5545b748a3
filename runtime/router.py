"""The intent router: which intent a message is about, and which model tier should answer it.

Layers, cheapest first (DESIGN.md §4, issue 2 §6):

a. **rules** — the intents' keywords (whole words, case-insensitive) and patterns, run with
   ``google-re2`` so no tenant regex can backtrack for ever. One intent's rule hit decides
   (confidence 0.99); hits from several intents narrow the classifier to those intents.
b. **classifier** — a head fitted on the intents' example utterances over sentence embeddings
   (multinomial logistic regression, or nearest centroid with fewer than 3 examples per intent),
   temperature-scaled on out-of-fold predictions of the examples. Cached per content hash of the
   intents, so a workflow version is fitted once per process. A message whose nearest example
   is less similar than the out-of-scope threshold is ``out_of_scope``.
c. **LLM judge** — only when the calibrated confidence is below the judge threshold.
d. **cost policy** — a complexity score of the message (length, questions and clauses, negative
   or urgent words, critical intents) and the tenant's budget give the tier prior and constraint.
e. **bandit** — Thompson sampling over tiers per (tenant, intent), learning from feedback; its
   action probabilities are logged with every decision.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import re
import threading
import time
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import re2
from pydantic import BaseModel, ConfigDict, Field, field_validator

from runtime.bandit import FeatureStore, InMemoryFeatureStore, TierBandit, cost_norm_from_prices
from runtime.embedder import Embedder, get_embedder
from runtime.router_eval import expected_calibration_error

if TYPE_CHECKING:
    from core.settings import Settings
    from runtime.llm import LLMProvider

log = logging.getLogger("flowdesk.router")

OUT_OF_SCOPE = "out_of_scope"
RULE_CONFIDENCE = 0.99
#: Longer messages are cut before rules and embedding (the tokenizer keeps 256 tokens anyway).
MAX_CHARS = 8000
INTENT_NAME_RE = re.compile(r"^[a-z][a-z0-9_]{0,63}$")
#: Softmax temperature for centroid cosines when too few examples exist to fit one (MiniLM was
#: trained with a similarity scale of 20, i.e. a temperature of 0.05).
CENTROID_DEFAULT_T = 0.05
#: Intents' own heads kept per process (one per workflow version in use).
HEAD_CACHE_SIZE = 128

Layer = Literal["rule", "classifier", "llm_judge", "fallback"]
#: A judge's "nothing fits" keeps the classifier's top intent when its probability is at least this.
JUDGE_KEEP_TOP = 0.4
TierName = Literal["cheap", "strong"]


def _re2_options() -> Any:
    opts = re2.Options()
    opts.case_sensitive = False
    opts.log_errors = False
    # Bounds the DFA memory a tenant's pattern may take.
    opts.max_mem = 8 << 20
    return opts


def compile_pattern(pattern: str) -> Any:
    """Compile a tenant pattern with RE2 (case-insensitive); raises ``ValueError`` if RE2 rejects it."""
    try:
        return re2.compile(pattern, _re2_options())
    except re2.error as e:
        msg = e.args[0].decode() if e.args and isinstance(e.args[0], bytes) else str(e)
        raise ValueError(f"pattern {pattern!r} is not a valid RE2 regex: {msg}") from None


def _keyword_regex(keywords: Sequence[str]) -> str:
    # Whole words or phrases; any run of whitespace inside a phrase matches. (?:^|\W) rather than
    # \b so keywords that start or end with punctuation still match.
    alts = "|".join(r"\s+".join(re2.escape(w) for w in k.split()) for k in keywords)
    return rf"(?:^|\W)(?:{alts})(?:\W|$)"


class Intent(BaseModel):
    """One intent of a ``classify`` node: its label, what it means, examples and precise rules."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(description="Label (a slug); the classify node's output of the same name.")
    description: str = Field(default="", description="What the intent covers; the LLM judge reads it.")
    examples: list[str] = Field(
        default_factory=list,
        description="Example user messages; at least 3 (better 10+) varied ones for a good classifier.",
    )
    keywords: list[str] = Field(
        default_factory=list,
        description="Words or phrases that alone decide this intent (whole words, case-insensitive).",
    )
    patterns: list[str] = Field(
        default_factory=list,
        description="RE2 regexes (case-insensitive) that alone decide this intent; keep them precise.",
    )

    @field_validator("name")
    @classmethod
    def _slug(cls, v: str) -> str:
        if not INTENT_NAME_RE.match(v):
            raise ValueError("intent names are lowercase slugs: a letter, then a-z, 0-9 or _")
        if v == OUT_OF_SCOPE:
            raise ValueError(f"{OUT_OF_SCOPE!r} is reserved for messages that fit no intent")
        return v

    @field_validator("examples")
    @classmethod
    def _examples(cls, v: list[str]) -> list[str]:
        if any(not e.strip() for e in v):
            raise ValueError("examples must not be empty")
        return v

    @field_validator("keywords")
    @classmethod
    def _keywords(cls, v: list[str]) -> list[str]:
        if any(not k.strip() for k in v):
            raise ValueError("keywords must not be empty")
        return v

    @field_validator("patterns")
    @classmethod
    def _patterns(cls, v: list[str]) -> list[str]:
        for p in v:
            if not p:
                raise ValueError("patterns must not be empty")
            compile_pattern(p)
        return v


def lint_intents(intents: Sequence[Intent]) -> list[str]:
    """Warnings about an intents set (for the workflow validator); errors are raised by ``Router``."""
    out = []
    seen: dict[str, str] = {}
    for it in intents:
        n = len(it.examples)
        if n == 0 and not (it.keywords or it.patterns):
            out.append(f"intent {it.name!r} has no examples and no rules: it can only be chosen by the judge")
        elif n < 3:
            out.append(
                f"intent {it.name!r} has {n} examples; 3 or more (better 10+) give a trained classifier"
            )
        if not it.description:
            out.append(f"intent {it.name!r} has no description; the LLM judge only sees its name")
        for e in it.examples:
            key = " ".join(e.lower().split())
            if key in seen and seen[key] != it.name:
                out.append(f"example {e!r} is in both {seen[key]!r} and {it.name!r}")
            seen[key] = it.name
    return out


def intents_hash(intents: Sequence[Intent], embedder_name: str = "") -> str:
    payload = json.dumps([i.model_dump() for i in intents], sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(f"{embedder_name}\n{payload}".encode()).hexdigest()


# --- rules --------------------------------------------------------------------------------


@dataclass(frozen=True)
class RuleSet:
    """Compiled keyword and pattern rules: (intent, what matched, compiled RE2)."""

    rules: tuple[tuple[str, str, Any], ...]

    @classmethod
    def build(cls, intents: Sequence[Intent]) -> RuleSet:
        rules: list[tuple[str, str, Any]] = []
        for it in intents:
            if it.keywords:
                rules.append((it.name, "keyword", compile_pattern(_keyword_regex(it.keywords))))
            for i, p in enumerate(it.patterns):
                rules.append((it.name, f"pattern #{i + 1}", compile_pattern(p)))
        return cls(tuple(rules))

    def hits(self, text: str) -> dict[str, str]:
        """Intent -> a description of its first matching rule, in intents order."""
        out: dict[str, str] = {}
        for name, kind, rx in self.rules:
            if name in out:
                continue
            m = rx.search(text)
            if m is not None:
                out[name] = f"{kind} {m.group(0).strip()[:60]!r}"
        return out


# --- classifier head ------------------------------------------------------------------------


def _dense(a: Any) -> np.ndarray:
    return a.toarray() if hasattr(a, "toarray") else np.asarray(a)


def _softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


def _fit_linear(kind: str, X: Any, y: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Weights so that logits = x @ W.T + b, shape (k, d) and (k,)."""
    if kind == "lr":
        from sklearn.linear_model import LogisticRegression

        # newton-cg reaches the same (convex) optimum as lbfgs in ~4x less time on these sizes.
        lr = LogisticRegression(C=10.0, solver="newton-cg", max_iter=500)
        lr.fit(X, y)
        W = np.asarray(lr.coef_, dtype=np.float64)
        b = np.asarray(lr.intercept_, dtype=np.float64)
        if k == 2:  # sklearn keeps one row for two classes: softmax([0, z]) == sigmoid(z)
            W = np.vstack([np.zeros_like(W[0]), W[0]])
            b = np.array([0.0, b[0]])
        return W, b
    # Nearest centroid: logits are cosine similarities to each intent's normalised mean.
    rows = []
    for c in range(k):
        v = _dense(X[y == c].mean(axis=0)).ravel()
        rows.append(v / max(float(np.linalg.norm(v)), 1e-12))
    return np.vstack(rows), np.zeros(k)


def _nll(logits: np.ndarray, y: np.ndarray, t: float) -> float:
    p = _softmax(logits / t)
    return float(-np.mean(np.log(np.clip(p[np.arange(len(y)), y], 1e-12, None))))


def _fit_temperature(logits: np.ndarray, y: np.ndarray) -> float:
    from scipy.optimize import minimize_scalar

    res = minimize_scalar(
        lambda lt: _nll(logits, y, math.exp(lt)), bounds=(math.log(1e-3), math.log(100.0)), method="bounded"
    )
    return float(math.exp(res.x))


@dataclass
class ClassifierScores:
    #: Calibrated probability per intent.
    probs: dict[str, float]
    #: Before temperature scaling.
    raw_probs: dict[str, float]
    #: Cosine similarity of the message to its nearest training example.
    max_similarity: float
    nearest: str


@dataclass
class Head:
    """A classifier fitted for one intents set (one workflow version)."""

    key: str
    labels: list[str]
    embedder: Embedder
    X: Any
    y: np.ndarray
    kind: Literal["lr", "centroid", "single"]
    W: np.ndarray
    b: np.ndarray
    temperature: float
    rules: RuleSet
    descriptions: dict[str, str]
    fit_ms: float = 0.0
    #: Out-of-fold metrics on the examples (what the temperature was fitted on).
    oof: dict[str, float] = field(default_factory=dict)
    #: Each example's similarity to its nearest other example (leave-one-out).
    loo_similarity: np.ndarray = field(default_factory=lambda: np.zeros(0))

    @property
    def auto_oos_threshold(self) -> float:
        """A threshold from the examples alone: the 2nd percentile of leave-one-out similarity, i.e.
        about 2% of held-out examples would be called out of scope."""
        if self.loo_similarity.size == 0:
            return 0.0
        return float(np.percentile(self.loo_similarity, 2.0))

    def scores(self, text: str) -> ClassifierScores:
        if not self.labels:
            return ClassifierScores({}, {}, 0.0, "")
        x = self.embedder.embed([text])
        sims = _dense(self.X @ x.T).ravel() if self.X.shape[0] else np.zeros(1)
        i = int(np.argmax(sims))
        if self.kind == "single":
            p = {self.labels[0]: 1.0}
            return ClassifierScores(p, dict(p), float(sims[i]), self.labels[self.y[i]])
        z = _dense(x @ self.W.T).ravel() + self.b
        raw = _softmax(z)
        cal = _softmax(z / self.temperature)
        return ClassifierScores(
            {n: float(v) for n, v in zip(self.labels, cal, strict=True)},
            {n: float(v) for n, v in zip(self.labels, raw, strict=True)},
            float(sims[i]),
            self.labels[self.y[i]],
        )


def fit_head(intents: Sequence[Intent], embedder: Embedder, key: str = "") -> Head:
    """Fit the classifier head and its temperature on the intents' examples only."""
    t0 = time.perf_counter()
    names = [i.name for i in intents]
    if len(set(names)) != len(names):
        dup = sorted({n for n in names if names.count(n) > 1})
        raise ValueError(f"duplicate intent names: {dup}")
    texts: list[str] = []
    ys: list[int] = []
    labels = [i.name for i in intents if i.examples]
    for c, it in enumerate(i for i in intents if i.examples):
        texts.extend(_normalize(e) for e in it.examples)
        ys.extend([c] * len(it.examples))
    y = np.array(ys, dtype=np.int64)
    fitted = embedder.fit(texts) if texts else embedder
    X = fitted.embed(texts) if texts else np.zeros((0, 1), dtype=np.float32)
    k = len(labels)
    counts = np.bincount(y, minlength=k) if k else np.zeros(0, dtype=np.int64)
    kind: Literal["lr", "centroid", "single"]
    if k <= 1:
        kind = "single"
    elif counts.min() >= 3:
        kind = "lr"
    else:
        kind = "centroid"
    W, b = (np.zeros((max(k, 1), 1)), np.zeros(max(k, 1))) if kind == "single" else _fit_linear(kind, X, y, k)

    temperature = 1.0 if kind != "centroid" else CENTROID_DEFAULT_T
    oof: dict[str, float] = {}
    folds = int(min(5, counts.min())) if k > 1 else 0
    if kind != "single" and folds >= 2:
        from sklearn.model_selection import StratifiedKFold

        logits = np.zeros((len(y), k))
        for tr, te in StratifiedKFold(folds, shuffle=True, random_state=0).split(np.zeros(len(y)), y):
            Wf, bf = _fit_linear(kind, X[tr], y[tr], k)
            logits[te] = _dense(X[te] @ Wf.T) + bf
        temperature = _fit_temperature(logits, y)
        raw = _softmax(logits)
        cal = _softmax(logits / temperature)
        ok = raw.argmax(1) == y
        oof = {
            "folds": float(folds),
            "accuracy": float(ok.mean()),
            "ece_raw": expected_calibration_error(raw.max(1).tolist(), ok.tolist()),
            "ece": expected_calibration_error(cal.max(1).tolist(), ok.tolist()),
        }

    loo = np.zeros(0)
    if X.shape[0] > 1:
        S = _dense(X @ X.T)
        np.fill_diagonal(S, -np.inf)
        loo = S.max(axis=1)
    return Head(
        key=key,
        labels=labels,
        embedder=fitted,
        X=X,
        y=y,
        kind=kind,
        W=W,
        b=b,
        temperature=temperature,
        rules=RuleSet.build(intents),
        descriptions={i.name: i.description or "; ".join(i.examples[:3]) or i.name for i in intents},
        fit_ms=(time.perf_counter() - t0) * 1000,
        oof=oof,
        loo_similarity=loo,
    )


# --- cost policy ----------------------------------------------------------------------------

_NEGATIVE = re.compile(
    r"\b(angry|furious|livid|unacceptable|terrible|horrible|awful|worst|ridiculous|disgusting|useless|"
    r"pathetic|scam|fraud|lawyer|legal action|sue|complain\w*|disappointed|frustrat\w*|annoy\w*|upset|"
    r"rude|broken|damaged|never again|fed up|sick of|wtf|hate)\b",
    re.IGNORECASE,
)
_URGENT = re.compile(
    r"\b(urgent\w*|asap|immediately|right now|emergency|critical|deadline|today|now)\b", re.IGNORECASE
)
_CLAUSE = re.compile(r"[.;!?]+\s+\S|\b(?:and|but|because|although|however|also|then|while)\b", re.IGNORECASE)
_SHOUT = re.compile(r"\b[A-Z]{3,}\b")


@dataclass(frozen=True)
class CostPolicy:
    """Turns a message's complexity and the tenant's budget into the bandit's prior and constraint."""

    #: Prior success of the strong tier (any message).
    strong_prior: float = 0.85
    #: Prior success of the cheap tier for the simplest message, falling linearly with complexity.
    cheap_prior: float = 0.85
    cheap_prior_drop: float = 0.35
    #: Bandit utility = success - cost_weight * cost_norm (strong costs 1, cheap a fraction).
    cost_weight: float = 0.1
    #: Below this many USD left, only the cheap tier is allowed.
    reserve_usd: float = 0.05
    #: Below this many USD left, the cost weight grows (up to 4x at the reserve).
    low_budget_usd: float = 5.0
    #: Intents whose wrong answers hurt most get a complexity bonus.
    critical_intents: Mapping[str, float] = field(
        default_factory=lambda: {
            "complaint": 0.25,
            "technical_support": 0.2,
            "refund_return": 0.1,
            "human_handoff": 0.1,
            "cancel_order": 0.05,
        }
    )

    def prior_means(self, complexity: float) -> dict[str, float]:
        return {
            "cheap": self.cheap_prior - self.cheap_prior_drop * complexity,
            "strong": self.strong_prior,
        }

    def allowed(self, budget_left_usd: float | None) -> tuple[str, ...] | None:
        if budget_left_usd is not None and budget_left_usd <= self.reserve_usd:
            return ("cheap",)
        return None

    def cost_weight_for(self, budget_left_usd: float | None) -> float:
        if budget_left_usd is None or budget_left_usd >= self.low_budget_usd:
            return self.cost_weight
        span = max(self.low_budget_usd - self.reserve_usd, 1e-9)
        short = min(1.0, max(0.0, (self.low_budget_usd - budget_left_usd) / span))
        return self.cost_weight * (1.0 + 3.0 * short)


def complexity_score(text: str, intent: str = "", policy: CostPolicy | None = None) -> float:
    """0 (a greeting) .. 1 (a long, angry, many-part message about a critical intent)."""
    policy = policy or CostPolicy()
    words = len(text.split())
    length = min(words, 80) / 80
    parts = text.count("?") + len(_CLAUSE.findall(text))
    structure = min(parts, 6) / 6
    affect_hits = len(_NEGATIVE.findall(text)) + len(_URGENT.findall(text)) + len(_SHOUT.findall(text))
    affect_hits += text.count("!!")
    affect = min(affect_hits, 3) / 3
    score = 0.3 * length + 0.2 * structure + 0.3 * affect + policy.critical_intents.get(intent, 0.0)
    return float(min(1.0, max(0.0, score)))


# --- decisions ----------------------------------------------------------------------------


@dataclass
class RouteDecision:
    intent: str
    confidence: float
    layer: Layer
    tier: TierName
    #: The bandit's probability of each tier for this decision (for off-policy evaluation).
    tier_probs: dict[str, float]
    #: Top 3 (intent, probability) of the layer that decided.
    candidates: list[tuple[str, float]]
    complexity: float
    latency_ms: float
    reason: str
    #: The judge's ``llm_call`` event payload when the judge was asked.
    llm_call: dict[str, Any] | None = None
    #: Similarity to the nearest example (None when a rule decided without the classifier).
    max_similarity: float | None = None

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["confidence"] = round(self.confidence, 4)
        d["tier_probs"] = {k: round(v, 4) for k, v in self.tier_probs.items()}
        d["candidates"] = [[n, round(p, 4)] for n, p in self.candidates]
        d["complexity"] = round(self.complexity, 4)
        d["latency_ms"] = round(self.latency_ms, 3)
        if self.max_similarity is not None:
            d["max_similarity"] = round(self.max_similarity, 4)
        return d


def _normalize(text: str) -> str:
    return text.replace("\u2019", "'").replace("\u2018", "'")[:MAX_CHARS]


class Router:
    """Decides intent and tier for a message; heads are cached per intents content hash."""

    def __init__(
        self,
        *,
        settings: Settings | None = None,
        embedder: Embedder | None = None,
        features: FeatureStore | None = None,
        policy: CostPolicy | None = None,
    ) -> None:
        if settings is None:
            from core.settings import get_settings

            settings = get_settings()
        self.settings = settings
        self._embedder = embedder
        self.features: FeatureStore = features if features is not None else InMemoryFeatureStore()
        self.policy = policy or CostPolicy()
        prices = {
            t: settings.TIERS[t].input_per_mtok + settings.TIERS[t].output_per_mtok for t in settings.TIERS
        }
        cost_norm = cost_norm_from_prices({t: prices.get(t, 0.0) for t in ("cheap", "strong")})
        self.bandit = TierBandit(self.features, cost_norm=cost_norm, cost_weight=self.policy.cost_weight)
        self._heads: OrderedDict[str, Head] = OrderedDict()
        self._lock = threading.Lock()
        self._key_locks: dict[str, threading.Lock] = {}
        self._ident_keys: dict[tuple[Any, ...], tuple[tuple[Intent, ...], str]] = {}
        #: How many heads this router has fitted (a cache hit does not count).
        self.fits = 0

    @property
    def embedder(self) -> Embedder:
        if self._embedder is None:
            self._embedder = get_embedder(self.settings)
        return self._embedder

    def head_for(self, intents: Sequence[Intent]) -> Head:
        """The fitted head for ``intents``: fitted once per content hash, thread-safe."""
        emb = self.embedder
        key = self._key(intents, emb.name)
        with self._lock:
            head = self._heads.get(key)
            if head is not None:
                self._heads.move_to_end(key)
                return head
            key_lock = self._key_locks.setdefault(key, threading.Lock())
        # Fit outside the global lock so other workflows keep routing; one fit per key.
        with key_lock:
            with self._lock:
                head = self._heads.get(key)
            if head is None:
                head = fit_head(intents, emb, key)
                with self._lock:
                    self._heads[key] = head
                    self.fits += 1
                    while len(self._heads) > HEAD_CACHE_SIZE:
                        old, _ = self._heads.popitem(last=False)
                        self._key_locks.pop(old, None)
                log.info(
                    "router head fitted: %d intents, kind=%s, T=%.3f, %.0f ms",
                    len(head.labels),
                    head.kind,
                    head.temperature,
                    head.fit_ms,
                )
        return head

    def _key(self, intents: Sequence[Intent], embedder_name: str) -> str:
        # Hashing the intents' JSON costs ~0.3 ms; the same Intent objects come back on every
        # message of a workflow version, so remember their hash by identity. The entry holds the
        # objects, so their ids cannot be reused while it exists. Intents are treated as
        # immutable once routed (a changed workflow is a new version with new objects).
        ident = (embedder_name, *(id(i) for i in intents))
        hit = self._ident_keys.get(ident)
        if hit is not None:
            return hit[1]
        key = intents_hash(intents, embedder_name)
        with self._lock:
            self._ident_keys[ident] = (tuple(intents), key)
            while len(self._ident_keys) > 4 * HEAD_CACHE_SIZE:
                self._ident_keys.pop(next(iter(self._ident_keys)))
        return key

    def prepare(self, intents: Sequence[Intent]) -> Head:
        """Fit (or fetch) the head now, e.g. when a workflow version is compiled."""
        return self.head_for(intents)

    def classifier_scores(self, text: str, intents: Sequence[Intent]) -> ClassifierScores:
        return self.head_for(intents).scores(_normalize(text))

    def oos_threshold_for(self, head: Head) -> float:
        # The settings value is measured for MiniLM cosines; TF-IDF cosines live on another
        # scale, so the degraded mode uses the threshold derived from its own examples.
        if self.embedder.degraded:
            return head.auto_oos_threshold
        return self.settings.ROUTER_OOS_THRESHOLD

    def decide(
        self,
        text: str,
        intents: list[Intent],
        *,
        tenant_id: str = "local",
        llm: LLMProvider | None = None,
        judge: bool = True,
        threshold: float | None = None,
        oos_threshold: float | None = None,
        budget_left_usd: float | None = None,
        rng_seed: int | None = None,
    ) -> RouteDecision:
        t0 = time.perf_counter()
        msg = _normalize(text)
        thr = self.settings.ROUTER_JUDGE_THRESHOLD if threshold is None else threshold
        llm_call: dict[str, Any] | None = None
        max_sim: float | None = None
        layer: Layer
        if not intents or not msg.strip():
            intent, conf, layer = OUT_OF_SCOPE, 1.0, "fallback"
            candidates: list[tuple[str, float]] = []
            reason = "no intents defined" if not intents else "empty message"
        else:
            head = self.head_for(intents)
            hits = head.rules.hits(msg)
            if len(hits) == 1:
                intent, why = next(iter(hits.items()))
                conf, layer, candidates = RULE_CONFIDENCE, "rule", [(intent, RULE_CONFIDENCE)]
                reason = f"rule: {why}"
            else:
                sc = head.scores(msg)
                max_sim = sc.max_similarity
                probs = sc.probs
                if hits:  # several intents' rules hit: the classifier chooses among them only
                    sub = {n: probs.get(n, 0.0) for n in hits}
                    total = sum(sub.values())
                    probs = {n: (p / total if total > 0 else 1.0 / len(sub)) for n, p in sub.items()}
                ranked = sorted(probs.items(), key=lambda kv: -kv[1])
                candidates = ranked[:3]
                top, top_p = ranked[0] if ranked else (OUT_OF_SCOPE, 0.0)
                oos_thr = self.oos_threshold_for(head) if oos_threshold is None else oos_threshold
                if not hits and sc.max_similarity < oos_thr:
                    intent, layer = OUT_OF_SCOPE, "classifier"
                    # 0.5 at the threshold, 1.0 at similarity 0: a monotone score, not a probability.
                    conf = min(1.0, 1.0 - 0.5 * max(sc.max_similarity, 0.0) / max(oos_thr, 1e-9))
                    reason = f"nearest example similarity {sc.max_similarity:.3f} < {oos_thr:.3f}"
                elif top_p < thr and judge and llm is not None:
                    labels = {n: head.descriptions.get(n, n) for n in (hits or head.descriptions)}
                    intent, conf, layer, reason, llm_call = self._judge(llm, msg, labels, top, top_p)
                else:
                    intent, conf, layer = top, top_p, "classifier"
                    reason = f"classifier p={top_p:.3f}" + (f" among rule hits {list(hits)}" if hits else "")
                    if top_p < thr:
                        reason += f" (< {thr:.2f}; judge {'disabled' if not judge else 'unavailable'})"
        complexity = complexity_score(msg, intent, self.policy)
        tier, tier_probs, tier_note = self._tier(tenant_id, intent, complexity, budget_left_usd, rng_seed)
        return RouteDecision(
            intent=intent,
            confidence=float(conf),
            layer=layer,
            tier=tier,
            tier_probs=tier_probs,
            candidates=[(n, float(p)) for n, p in candidates],
            complexity=complexity,
            latency_ms=(time.perf_counter() - t0) * 1000,
            reason=reason + tier_note,
            llm_call=llm_call,
            max_similarity=max_sim,
        )

    def _judge(
        self, llm: LLMProvider, msg: str, labels: dict[str, str], top: str, top_p: float
    ) -> tuple[str, float, Layer, str, dict[str, Any] | None]:
        from runtime.llm import LLMError

        try:
            label, jconf, resp = llm.classify(msg, labels, tier="cheap")
        except LLMError as e:
            log.warning("router judge failed, keeping the classifier's answer: %s", e)
            return top, top_p, "fallback", f"judge failed ({e}); classifier p={top_p:.3f}", None
        call = resp.event()
        if label is None and top_p >= JUDGE_KEEP_TOP:
            # The message passed the out-of-scope similarity check and the classifier's best
            # guess is a close call, not noise: the judge was asked to break a tie, and
            # "none of them" from it is weaker evidence than the classifier's own ranking.
            return top, top_p, "fallback", f"judge: nothing fits; classifier top kept (p={top_p:.3f})", call
        if label is None:
            return (
                OUT_OF_SCOPE,
                float(jconf),
                "llm_judge",
                f"judge: nothing fits (classifier p={top_p:.3f})",
                call,
            )
        if label not in labels:
            return top, top_p, "fallback", f"judge answered unknown label {label!r}; classifier kept", call
        return label, float(jconf), "llm_judge", f"judge (classifier p={top_p:.3f} for {top})", call

    def _tier(
        self,
        tenant_id: str,
        intent: str,
        complexity: float,
        budget_left_usd: float | None,
        rng_seed: int | None,
    ) -> tuple[TierName, dict[str, float], str]:
        prior = self.policy.prior_means(complexity)
        allowed = self.policy.allowed(budget_left_usd)
        try:
            choice = self.bandit.choose(
                tenant_id,
                intent,
                prior_means=prior,
                allowed=allowed,
                cost_weight=self.policy.cost_weight_for(budget_left_usd),
                rng=np.random.default_rng(rng_seed),
            )
        except Exception as e:  # the feature store is I/O: routing must survive it being down
            log.warning("router bandit unavailable, using the cost policy's prior tier: %s", e)
            lam = self.policy.cost_weight_for(budget_left_usd)
            cn = self.bandit.cost_norm
            cheap_u = prior["cheap"] - lam * cn.get("cheap", 0.0)
            strong_u = prior["strong"] - lam * cn.get("strong", 0.0)
            tier = "cheap" if allowed == ("cheap",) or cheap_u >= strong_u else "strong"
            return tier, {"cheap": float(tier == "cheap"), "strong": float(tier == "strong")}, "; bandit down"
        note = "; budget: cheap only" if allowed == ("cheap",) else ""
        return choice.tier, choice.probs, note  # type: ignore[return-value]

    def feedback(self, *, tenant_id: str, intent: str, tier: str, reward: float) -> None:
        """Thumbs up = 1, thumbs down = 0, handoff = 0 (fractions allowed)."""
        self.bandit.update(tenant_id, intent, tier, reward)
