"""Router evaluation on a labelled set of messages: accuracy, macro-F1, calibration, out-of-scope.

``evaluate`` is pure apart from timing each decision. ``load_jsonl`` reads the test-set format:
one ``{"text": ..., "intent": ...}`` object per line (``out_of_scope`` for messages that fit no
intent). The set must never be used to train or tune the router.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from runtime.llm import LLMProvider
    from runtime.router import Intent, Router

OOS = "out_of_scope"


class DatasetError(ValueError):
    """A line of a JSONL test set is not a ``{"text": str, "intent": str}`` object."""


def load_jsonl(path: str | Path) -> list[dict[str, str]]:
    """Read ``{"text", "intent"}`` rows; blank lines are skipped, anything else malformed is an error."""
    rows: list[dict[str, str]] = []
    p = Path(path)
    with p.open(encoding="utf-8") as f:
        for n, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as e:
                raise DatasetError(f"{p}:{n}: invalid JSON: {e.msg} (column {e.colno})") from None
            if not isinstance(obj, dict):
                raise DatasetError(f"{p}:{n}: expected a JSON object, got {type(obj).__name__}")
            missing = [k for k in ("text", "intent") if k not in obj]
            if missing:
                raise DatasetError(f"{p}:{n}: missing key(s) {missing}")
            if not isinstance(obj["text"], str) or not isinstance(obj["intent"], str):
                raise DatasetError(f"{p}:{n}: 'text' and 'intent' must be strings")
            if not obj["intent"].strip():
                raise DatasetError(f"{p}:{n}: empty 'intent'")
            rows.append({"text": obj["text"], "intent": obj["intent"].strip()})
    return rows


def expected_calibration_error(conf: Sequence[float], correct: Sequence[bool], bins: int = 15) -> float:
    """ECE with equal-width bins over (0, 1]: sum over bins of |accuracy - confidence| weighted by size."""
    n = len(conf)
    if n == 0:
        return 0.0
    total = 0.0
    for b in range(bins):
        lo, hi = b / bins, (b + 1) / bins
        idx = [i for i, c in enumerate(conf) if (lo < c <= hi) or (b == 0 and c <= lo)]
        if not idx:
            continue
        acc = sum(1 for i in idx if correct[i]) / len(idx)
        avg = sum(conf[i] for i in idx) / len(idx)
        total += len(idx) / n * abs(acc - avg)
    return total


def auroc(scores: Sequence[float], positive: Sequence[bool]) -> float | None:
    """Area under the ROC curve (ties count half); None without both classes."""
    pos = [s for s, p in zip(scores, positive, strict=True) if p]
    neg = [s for s, p in zip(scores, positive, strict=True) if not p]
    if not pos or not neg:
        return None
    # Rank-sum (Mann-Whitney U) with average ranks for ties.
    order = sorted(range(len(scores)), key=lambda i: scores[i])
    ranks = [0.0] * len(scores)
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and scores[order[j + 1]] == scores[order[i]]:
            j += 1
        for k in range(i, j + 1):
            ranks[order[k]] = (i + j) / 2 + 1
        i = j + 1
    r_pos = sum(r for r, p in zip(ranks, positive, strict=True) if p)
    u = r_pos - len(pos) * (len(pos) + 1) / 2
    return u / (len(pos) * len(neg))


def _percentile(values: Sequence[float], q: float) -> float:
    if not values:
        return 0.0
    s = sorted(values)
    k = (len(s) - 1) * q / 100
    lo = int(k)
    hi = min(lo + 1, len(s) - 1)
    return s[lo] + (s[hi] - s[lo]) * (k - lo)


def classification_report(y_true: Sequence[str], y_pred: Sequence[str]) -> dict[str, Any]:
    """Per-label precision/recall/F1/support, confusion, accuracy and macro-F1 over the true labels."""
    labels = sorted(set(y_true) | set(y_pred))
    tp: Counter[str] = Counter()
    pred_n: Counter[str] = Counter(y_pred)
    true_n: Counter[str] = Counter(y_true)
    confusion: dict[str, dict[str, int]] = {}
    for t, p in zip(y_true, y_pred, strict=True):
        confusion.setdefault(t, {})
        confusion[t][p] = confusion[t].get(p, 0) + 1
        if t == p:
            tp[t] += 1
    per: dict[str, dict[str, float]] = {}
    for lab in labels:
        prec = tp[lab] / pred_n[lab] if pred_n[lab] else 0.0
        rec = tp[lab] / true_n[lab] if true_n[lab] else 0.0
        f1 = 2 * prec * rec / (prec + rec) if prec + rec else 0.0
        per[lab] = {"precision": prec, "recall": rec, "f1": f1, "support": true_n[lab]}
    true_labels = sorted(true_n)
    n = len(y_true)
    return {
        "accuracy": sum(tp.values()) / n if n else 0.0,
        # Averaged over labels that occur in the truth: predicting a label absent from the set
        # costs precision elsewhere but does not add a zero-F1 class of its own.
        "macro_f1": sum(per[lab]["f1"] for lab in true_labels) / len(true_labels) if true_labels else 0.0,
        "per_intent": per,
        "confusion": {t: dict(sorted(confusion[t].items())) for t in sorted(confusion)},
    }


def evaluate(
    router: Router,
    intents: Sequence[Intent],
    rows: Sequence[dict[str, str]],
    *,
    llm: LLMProvider | None = None,
    tenant_id: str = "eval",
) -> dict[str, Any]:
    """Route every row once and report the metrics (the judge is used only when ``llm`` is given)."""
    intent_list = list(intents)
    known = {i.name for i in intent_list}
    router.prepare(intent_list)  # fitting is measured by the benchmark, not per message
    y_true: list[str] = []
    y_pred: list[str] = []
    lat: list[float] = []
    layers: Counter[str] = Counter()
    judged = 0
    top3_hits = 0
    cal_conf: list[float] = []
    raw_conf: list[float] = []
    cls_ok: list[bool] = []
    oos_scores: list[float] = []
    for i, row in enumerate(rows):
        text, gold = row["text"], row["intent"]
        t0 = time.perf_counter()
        d = router.decide(text, intent_list, tenant_id=tenant_id, llm=llm, judge=llm is not None, rng_seed=i)
        lat.append((time.perf_counter() - t0) * 1000)
        y_true.append(gold)
        y_pred.append(d.intent)
        layers[d.layer] += 1
        judged += d.llm_call is not None
        top3_hits += gold == d.intent or gold in [n for n, _ in d.candidates[:3]]
        # Calibration of the classifier itself (whichever layer decided), on in-scope rows.
        sc = router.classifier_scores(text, intent_list)
        oos_scores.append(-sc.max_similarity)
        if gold in known and sc.probs:
            best = max(sc.probs, key=sc.probs.__getitem__)
            cal_conf.append(sc.probs[best])
            raw_conf.append(sc.raw_probs[best])
            cls_ok.append(best == gold)

    n = len(rows)
    rep = classification_report(y_true, y_pred)
    is_oos = [t == OOS for t in y_true]
    pred_oos = [p == OOS for p in y_pred]
    tp = sum(1 for a, b in zip(is_oos, pred_oos, strict=True) if a and b)
    oos: dict[str, Any] = {
        "n": sum(is_oos),
        "precision": tp / sum(pred_oos) if sum(pred_oos) else 0.0,
        "recall": tp / sum(is_oos) if sum(is_oos) else 0.0,
    }
    au = auroc(oos_scores, is_oos)
    if au is not None:
        oos["auroc"] = au
    return {
        "n": n,
        "accuracy": rep["accuracy"],
        "macro_f1": rep["macro_f1"],
        "top3_accuracy": top3_hits / n if n else 0.0,
        "p50_ms": _percentile(lat, 50),
        "p95_ms": _percentile(lat, 95),
        "p99_ms": _percentile(lat, 99),
        "per_intent": rep["per_intent"],
        "confusion": rep["confusion"],
        "ece": expected_calibration_error(cal_conf, cls_ok),
        "ece_raw": expected_calibration_error(raw_conf, cls_ok),
        "classifier_accuracy": sum(cls_ok) / len(cls_ok) if cls_ok else 0.0,
        "oos": oos,
        "layers": dict(sorted(layers.items())),
        "judge_rate": judged / n if n else 0.0,
        "unknown_labels": sorted(set(y_true) - known - {OOS}),
    }
