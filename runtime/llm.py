"""LLM providers: one interface over the ``openai`` SDK, and the built-in offline provider.

INTERFACE CONTRACT (other modules rely on it; implementations are filled in below):

* ``LLMProvider.chat(messages, *, tier="cheap", model=None, temperature=0.2, max_tokens=None,
  tools=None, json_mode=False, on_token=None, timeout_s=None) -> LLMResponse``
* ``LLMProvider.classify(text, labels: dict[label, description], *, tier="cheap")
  -> tuple[str | None, float, LLMResponse]`` (label or None when nothing fits, confidence)
* ``LLMProvider.extract(text, fields: dict[name, description], *, tier="cheap")
  -> tuple[dict[str, Any], LLMResponse]`` (only fields found)
* ``get_provider(settings) -> LLMProvider``: offline unless an OpenAI key/base URL is set.

Conventions (implementation notes):

* Retrieved knowledge goes in the system prompt after a line ``Knowledge:``, one passage per line,
  optionally starting with ``- `` and/or ``[title]``. The offline provider answers with the 1-2
  sentences of it most relevant to the last user message (BM25 over sentences, stop words ignored).
* Token usage is the provider's when it reports one, else :func:`count_tokens` (``ceil(len/4)``).
  Cost is :func:`price` at the tier's USD-per-million-token prices (``settings.TIERS`` or a
  tenant's own ``tiers``), for both providers.
* ``classify`` returns ``(None, 0.0, response)`` when nothing fits: the confidence is always that of
  the returned label.
* ``timeout_s`` (default ``LLM_TIMEOUT_S``) bounds a whole call, retries included.
* ``on_token`` exceptions propagate unchanged; every provider failure is an :class:`LLMError`.
"""

from __future__ import annotations

import email.utils
import hashlib
import json
import math
import random
import re
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import lru_cache
from typing import TYPE_CHECKING, Any, Protocol

from core.settings import Settings, get_settings

if TYPE_CHECKING:
    import pybreaker
    import tenacity

    from core.settings import Tier

# openai (~0.6 s), pybreaker (pulls redis) and tenacity are imported lazily, inside the OpenAI path:
# the offline default and the CLI must not pay for them.

Message = dict[str, Any]


@dataclass
class Usage:
    prompt_tokens: int = 0
    completion_tokens: int = 0

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


@dataclass
class LLMResponse:
    text: str
    model: str
    tier: str
    provider: str  # "offline" or "openai"
    usage: Usage = field(default_factory=Usage)
    cost_usd: float = 0.0
    latency_ms: float = 0.0
    tool_calls: list[dict[str, Any]] = field(default_factory=list)

    @property
    def offline(self) -> bool:
        return self.provider == "offline"

    def event(self) -> dict[str, Any]:
        """Payload of the ``llm_call`` event."""
        return {
            "provider": self.provider,
            "model": self.model,
            "tier": self.tier,
            "prompt_tokens": self.usage.prompt_tokens,
            "completion_tokens": self.usage.completion_tokens,
            "cost_usd": round(self.cost_usd, 8),
            "latency_ms": round(self.latency_ms, 3),
        }


class LLMError(RuntimeError):
    """The provider failed after its retries (or its circuit is open)."""


class LLMProvider(Protocol):
    name: str

    def chat(
        self,
        messages: list[Message],
        *,
        tier: str = "cheap",
        model: str | None = None,
        temperature: float = 0.2,
        max_tokens: int | None = None,
        tools: list[dict[str, Any]] | None = None,
        json_mode: bool = False,
        on_token: Callable[[str], None] | None = None,
        timeout_s: float | None = None,
    ) -> LLMResponse: ...

    def classify(
        self, text: str, labels: dict[str, str], *, tier: str = "cheap"
    ) -> tuple[str | None, float, LLMResponse]: ...

    def extract(
        self, text: str, fields: dict[str, str], *, tier: str = "cheap"
    ) -> tuple[dict[str, Any], LLMResponse]: ...


# ---------------------------------------------------------------------------------------------
# Tokens and prices (shared by both providers)
# ---------------------------------------------------------------------------------------------


def count_tokens(text: str) -> int:
    """Approximate token count: ``ceil(len(text) / 4)``, at least 1.

    About 4 characters per token is the usual rule of thumb for English with BPE tokenizers; it is
    used only where the provider reports no usage (the offline provider, servers without ``usage``),
    so costs stay non-zero and comparable without shipping a tokenizer.
    """
    return max(1, math.ceil(len(text) / 4))


def _tier_of(name: str, tiers: Mapping[str, Tier]) -> Tier | None:
    """A tier by tier name, ``offline-<tier>`` model name, or the model a tier maps to."""
    if name in tiers:
        return tiers[name]
    if name.startswith("offline-") and name.removeprefix("offline-") in tiers:
        return tiers[name.removeprefix("offline-")]
    for tier in tiers.values():
        if tier.model == name:
            return tier
    return None


def price(
    tier_or_model: str,
    usage: Usage,
    settings: Settings | None = None,
    *,
    tiers: Mapping[str, Tier] | None = None,
) -> float:
    """Cost in USD of ``usage`` at the tier's prices (USD per million tokens); 0.0 when unknown.

    ``tiers`` overrides ``settings.TIERS`` (a tenant's own tier mapping).
    """
    table = tiers if tiers is not None else (settings or get_settings()).TIERS
    tier = _tier_of(tier_or_model, table)
    if tier is None:
        return 0.0
    return (usage.prompt_tokens * tier.input_per_mtok + usage.completion_tokens * tier.output_per_mtok) / 1e6


def _content_text(content: Any) -> str:
    """Text of a message ``content``: a string, or a list of ``{"type": "text", "text": ...}`` parts."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(str(p.get("text", "")) for p in content if isinstance(p, dict))
    return "" if content is None else str(content)


def _prompt_tokens(messages: list[Message]) -> int:
    return count_tokens("\n".join(_content_text(m.get("content")) for m in messages))


def _unknown_tier(tier: str, tiers: Mapping[str, Tier]) -> LLMError:
    return LLMError(f"unknown model tier {tier!r}; this deployment defines {sorted(tiers)}")


def _parse_json_object(text: str) -> dict[str, Any] | None:
    """The JSON object in a model reply: the whole text, or its outermost ``{...}`` (code fences, prose)."""
    for candidate in (text.strip(), text[text.find("{") : text.rfind("}") + 1]):
        if not candidate:
            continue
        try:
            value = json.loads(candidate)
        except ValueError:
            continue
        if isinstance(value, dict):
            return value
    return None


def _chunks(text: str) -> list[str]:
    """Word chunks (each word with its trailing whitespace) whose concatenation is ``text``."""
    parts = re.findall(r"\s*\S+\s*", text)
    return parts or ([text] if text else [])


# ---------------------------------------------------------------------------------------------
# Text helpers of the offline provider (our own simple, linear patterns; never tenant patterns)
# ---------------------------------------------------------------------------------------------

_WORD_RE = re.compile(r"[a-z0-9]+(?:'[a-z]+)?")
_SENTENCE_SPLIT_RE = re.compile(r"(?<=[.!?])\s+")
_TITLE_RE = re.compile(r"\[([^\]\n]{0,200})\]\s*")


def _wordset(words: str) -> frozenset[str]:
    return frozenset(words.split())


STOP_WORDS = _wordset(
    """a about above after again against all am an and any are aren't as at be because been before being
    below between both but by can can't cannot could couldn't did didn't do does doesn't doing don't
    down during each few for from further get got had hadn't has hasn't have haven't having he he'd
    he'll he's her here here's hers herself him himself his how how's i i'd i'll i'm i've if in into
    is isn't it it's its itself just let's me might more most much must mustn't my myself no nor not
    now of off on once only or other ought our ours ourselves out over own please same shan't she
    she'd she'll she's should shouldn't so some such than that that's the their theirs them
    themselves then there there's these they they'd they'll they're they've this those through to
    too under until up us very was wasn't we we'd we'll we're we've were weren't what what's when
    when's where where's which while who who's whom why why's will with won't would wouldn't yet you
    you'd you'll you're you've your yours yourself yourselves want wants
    need needs like would im ive dont cant"""
)


def _stem(word: str) -> str:
    """Crude suffix stripping so ``orders``/``ordered``/``ordering`` and ``refunds``/``refunded`` meet."""
    w = word
    if len(w) > 4 and w.endswith("ies"):
        w = w[:-3] + "y"
    elif len(w) > 3 and w.endswith("s") and not w.endswith(("ss", "us", "is")):
        w = w[:-1]
    for suffix in ("ing", "ed", "ly"):
        if w.endswith(suffix) and len(w) - len(suffix) >= 3:
            w = w[: -len(suffix)]
            if len(w) > 2 and w[-1] == w[-2] and w[-1] not in "aeious":
                w = w[:-1]  # shipped -> shipp -> ship
            break
    if len(w) > 3 and w.endswith("e"):
        w = w[:-1]  # arrive/arrived -> arriv
    return w


def _terms(text: str) -> list[str]:
    """Lowercased, stop-word-free, stemmed words."""
    words = _WORD_RE.findall(text.lower().replace("\u2019", "'"))
    return [_stem(w) for w in words if w not in STOP_WORDS and w.replace("'", "") not in STOP_WORDS]


def _split_knowledge(system: str) -> tuple[str, list[tuple[str, str]]]:
    """Split a system prompt into (instruction, [(title, passage)]) at a line ``Knowledge:``."""
    lines = system.splitlines()
    for i, line in enumerate(lines):
        stripped = line.strip()
        if stripped.lower().startswith("knowledge:"):
            passages: list[tuple[str, str]] = []
            for raw in [stripped[len("knowledge:") :], *lines[i + 1 :]]:
                item = raw.strip()
                if item.startswith(("- ", "* ")):
                    item = item[2:].strip()
                title = ""
                m = _TITLE_RE.match(item)
                if m:
                    title, item = m.group(1), item[m.end() :]
                if item:
                    passages.append((title, item))
            return "\n".join(lines[:i]).strip(), passages
    return system.strip(), []


@dataclass(frozen=True)
class _KnowledgeIndex:
    """A system prompt split into its instruction and its knowledge sentences, ready for BM25."""

    instruction: str
    sentences: tuple[str, ...]
    tfs: tuple[dict[str, int], ...]
    lengths: tuple[int, ...]
    df: dict[str, int]
    avg_len: float
    #: Which passage each sentence came from.
    passage_of: tuple[int, ...] = ()


@lru_cache(maxsize=256)
def _index_prompt(system: str) -> _KnowledgeIndex:
    """Parsed once per distinct prompt: a node sends the same knowledge turn after turn."""
    instruction, passages = _split_knowledge(system)
    sentences: list[str] = []
    tfs: list[dict[str, int]] = []
    lengths: list[int] = []
    df: dict[str, int] = {}
    passage_of: list[int] = []
    for p_index, (title, passage) in enumerate(passages):
        title_terms = _terms(title)
        for sentence in _SENTENCE_SPLIT_RE.split(passage):
            if not sentence.strip():
                continue
            terms = _terms(sentence) + title_terms
            tf: dict[str, int] = {}
            for t in terms:
                tf[t] = tf.get(t, 0) + 1
            for t in tf:
                df[t] = df.get(t, 0) + 1
            sentences.append(sentence.strip())
            passage_of.append(p_index)
            tfs.append(tf)
            lengths.append(len(terms))
    avg = (sum(lengths) / len(lengths) if lengths else 0.0) or 1.0
    return _KnowledgeIndex(
        instruction, tuple(sentences), tuple(tfs), tuple(lengths), df, avg, tuple(passage_of)
    )


def _bm25_scores(index: _KnowledgeIndex, query: list[str], k1: float = 1.2, b: float = 0.75) -> list[float]:
    """BM25 score of each knowledge sentence for the query terms."""
    n = len(index.sentences)
    terms = set(query)
    scores = []
    for tf, length in zip(index.tfs, index.lengths, strict=True):
        score = 0.0
        for t in terms:
            f = tf.get(t, 0)
            if f:
                idf = math.log(1 + (n - index.df[t] + 0.5) / (index.df[t] + 0.5))
                score += idf * f * (k1 + 1) / (f + k1 * (1 - b + b * length / index.avg_len))
        scores.append(score)
    return scores


_REFLECT = {
    "i": "you",
    "me": "you",
    "my": "your",
    "mine": "yours",
    "myself": "yourself",
    "am": "are",
    "i'm": "you're",
    "im": "you're",
    "i've": "you've",
    "i'll": "you'll",
    "i'd": "you'd",
    "we": "you",
    "us": "you",
    "our": "your",
    "ours": "yours",
    "we're": "you're",
}
_GREETINGS = _wordset("hi hello hey hiya howdy yo morning evening afternoon good there thanks thank you")


def _reflect(message: str, max_words: int = 20) -> str:
    """The user's words seen from the assistant's side (``my order`` -> ``your order``), trimmed."""
    out = []
    for word in message.replace("\u2019", "'").split()[:max_words]:
        core = word.strip(".,!?;:\"'()")
        swap = _REFLECT.get(core.lower())
        out.append(word.replace(core, swap, 1) if swap and core else word)
    text = " ".join(out).rstrip(".,!?;: ")
    return text + (" ..." if len(message.split()) > max_words else "")


# Instruction keywords -> (opening, closing) the offline reply adds, so it follows the node's prompt.
_INSTRUCTION_CUES: tuple[tuple[tuple[str, ...], str, str], ...] = (
    (("apologi", "sorry", "empath"), "I'm sorry for the trouble.", ""),
    (("greet", "welcome"), "Hello!", ""),
    (("thank",), "Thank you for reaching out.", ""),
    (("escalat", "hand off", "handoff", "human", "colleague"), "", "A colleague will follow up with you."),
    (("confirm",), "", "Could you confirm that this is correct?"),
    (("ask for", "ask the", "collect", "clarif", "more detail"), "", "Could you tell me a bit more?"),
)


def _acknowledge(instruction: str, user: str) -> str:
    low = instruction.lower()
    opening = [o for keys, o, _ in _INSTRUCTION_CUES if o and any(k in low for k in keys)]
    closing = [c for keys, _, c in _INSTRUCTION_CUES if c and any(k in low for k in keys)]
    words = [w.strip(".,!?;:") for w in user.lower().split()]
    if not user.strip():
        body = "How can I help you today?"
    elif all(w in _GREETINGS for w in words if w):
        body = "Hello! How can I help you today?"
        opening = [o for o in opening if o != "Hello!"]
    else:
        body = f'I understand you\'re asking about "{_reflect(user)}".'
    return " ".join([*opening[:1], body, *closing[:1]])


def _grounded_answer(index: _KnowledgeIndex, user: str, *, whole_passage: bool = False) -> str | None:
    """The 1-2 knowledge sentences most relevant to ``user``; None when nothing overlaps.

    With ``whole_passage`` (the instruction asks to walk through steps), the whole passage the
    best sentence belongs to, in order: step-by-step guides make no sense cut to two steps.
    """
    scores = _bm25_scores(index, _terms(user))
    ranked = sorted(range(len(scores)), key=lambda i: (-scores[i], i))
    if not ranked or scores[ranked[0]] <= 0:
        return None
    if whole_passage and index.passage_of:
        p = index.passage_of[ranked[0]]
        return " ".join(s for s, q in zip(index.sentences, index.passage_of, strict=True) if q == p)
    best = [ranked[0]]
    if len(ranked) > 1 and scores[ranked[1]] >= 0.6 * scores[ranked[0]]:
        best.append(ranked[1])
    # Keep the knowledge's own order so two steps read in sequence.
    return " ".join(index.sentences[i] for i in sorted(best))


# --- extraction heuristics -------------------------------------------------------------------

_EMAIL_RE = re.compile(r"[A-Za-z0-9._%+-]{1,64}@[A-Za-z0-9-]{1,63}(?:\.[A-Za-z0-9-]{1,63}){1,8}")
_PHONE_RE = re.compile(r"(?<![\w+])\+?\d[\d ().-]{5,18}\d(?!\w)")
_NUMBER_ID_RE = re.compile(r"\b\d{4,24}\b")
_NAME_TRIGGER_RE = re.compile(
    r"\b(my name is|my name's|name is|name:|call me|i am|i'm|im|this is)\s+", re.IGNORECASE
)
_COMPANY_TRIGGER_RE = re.compile(
    r"\b(company is|company name is|company:|organi[sz]ation is|business is|employer is|employed by"
    r"|work for|work at|working for|working at|i'm with|i am with|from|at|with)\s+",
    re.IGNORECASE,
)
_QTY_EXPLICIT_RE = re.compile(r"\b(?:qty|quantity|amount of)\s*[:=]?\s*(\d{1,4})\b", re.IGNORECASE)
_QTY_UNIT_RE = re.compile(
    r"\b(\d{1,4})\s*(?:x\b|×|pcs\b|pieces\b|units\b|items\b|boxes\b|packs\b|of\b|copies\b)", re.IGNORECASE
)
_SMALL_NUMBER_RE = re.compile(r"(?<![\w.,/-])(\d{1,3})(?![\w.,/-])")
_AMOUNT_RE = re.compile(
    r"[$€£]\s?(\d{1,9}(?:[.,]\d{1,2})?)|\b(\d{1,9}(?:\.\d{1,2})?)\s?(?:usd|eur|gbp|dollars|euros)\b"
)
_DATE_RE = re.compile(r"\b(\d{4}-\d{2}-\d{2}|\d{1,2}/\d{1,2}/\d{2,4})\b")
_NAME_TOKEN_RE = re.compile(r"[A-Za-z][A-Za-z'.&-]{0,40}")

_NUMBER_WORDS = {
    "one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7, "eight": 8, "nine": 9,
    "ten": 10, "eleven": 11, "twelve": 12, "a couple": 2, "a pair": 2, "a dozen": 12, "a single": 1,
}  # fmt: skip
# Words that end a name/company phrase.
_PHRASE_STOP = _wordset(
    """from at and with of for in on the a an but or here calling writing about regarding i we my our
    is was am are to who which that because so please thanks"""
)
# Capitalised words a weak trigger ("I'm ...", "at ...") must not take for a name or a company.
_NOT_NAMES = _wordset(
    """sorry not looking trying interested calling writing having just so very really still also here
    monday tuesday wednesday thursday friday saturday sunday january february march april may june july
    august september october november december today tomorrow yesterday the a an this that it i"""
)
_COMPANY_SUFFIXES = _wordset("inc ltd llc gmbh co corp plc sa ag bv")


def _find_emails(text: str) -> list[tuple[str, int, int]]:
    found = []
    pos = 0
    for token in text.split():
        start = text.find(token, pos)
        pos = start + len(token)
        if "@" not in token or len(token) > 254:
            continue
        core = token.strip("<>()[]{},;:\"'!?").rstrip(".")
        m = _EMAIL_RE.fullmatch(core)
        if m and re.fullmatch(r"[A-Za-z]{2,24}", core.rsplit(".", 1)[-1]):
            offset = start + token.find(core)
            found.append((core, offset, offset + len(core)))
    return found


def _find_phones(text: str) -> list[tuple[str, int, int]]:
    found = []
    for m in _PHONE_RE.finditer(text):
        digits = sum(ch.isdigit() for ch in m.group(0))
        if 7 <= digits <= 15:
            found.append((m.group(0).strip(), m.start(), m.end()))
    return found


def _phrase_after(
    text: str, start: int, *, strict: bool, max_words: int, company: bool = False
) -> str | None:
    """Up to ``max_words`` name-like words after ``start``; ``strict`` wants each capitalised."""
    words: list[str] = []
    for raw in text[start : start + 200].split():
        m = _NAME_TOKEN_RE.match(raw)
        if not m:
            break
        # "Inc." and "Corp." lose their dot too: at a sentence end it cannot be told apart from the full stop.
        word = m.group(0).rstrip(".'-")
        low = word.lower()
        is_suffix = company and words and low in _COMPANY_SUFFIXES
        if not word or (low in _PHRASE_STOP and not is_suffix):
            break
        if strict and not is_suffix and (not word[0].isupper() or low in _NOT_NAMES):
            break
        words.append(word)
        # Punctuation after the word (", " / ". ") ends the phrase.
        if len(m.group(0)) < len(raw) or raw[-1] in ".,;:!?" or len(words) >= max_words:
            break
    if not words:
        return None
    if not strict:
        words = [w if w[0].isupper() else w.capitalize() for w in words]
    return " ".join(words)


def _find_name(text: str) -> str | None:
    for m in _NAME_TRIGGER_RE.finditer(text):
        strong = m.group(1).lower() in ("my name is", "my name's", "name is", "name:", "call me")
        name = _phrase_after(text, m.end(), strict=not strong, max_words=3)
        if name:
            return name
    return None


def _find_company(text: str) -> str | None:
    weak = ("from", "at", "with")
    matches = list(_COMPANY_TRIGGER_RE.finditer(text))
    # Explicit phrases ("company is", "work for") win over a bare "from"/"at".
    for m in sorted(matches, key=lambda m: (m.group(1).lower() in weak, m.start())):
        strong = m.group(1).lower() not in weak
        company = _phrase_after(text, m.end(), strict=not strong, max_words=4, company=True)
        if company:
            return company
    return None


def _find_quantity(text: str, taken: bytearray) -> int | None:
    for pattern in (_QTY_EXPLICIT_RE, _QTY_UNIT_RE):
        m = pattern.search(text)
        if m:
            return int(m.group(1))
    low = text.lower()
    for m in _SMALL_NUMBER_RE.finditer(text):
        if not taken[m.start()] and int(m.group(1)) > 0:
            return int(m.group(1))
    hits = [(low.find(w), n) for w, n in _NUMBER_WORDS.items() if re.search(rf"\b{w}\b", low)]
    return min(hits)[1] if hits else None


def _find_generic(text: str, field_name: str) -> str | None:
    """``field: value`` / ``field = value`` / ``field is value`` for the field's name."""
    labels = {field_name, field_name.replace("_", " "), field_name.replace("_", "-")}
    for label in sorted(labels, key=len, reverse=True):
        pattern = rf"(?<!\w){re.escape(label)}\s*(?:[:=]|\bis\b|\bwas\b)\s*([^\n,;!?]{{1,80}})"
        m = re.search(pattern, text, re.IGNORECASE)
        if m:
            value = " ".join(m.group(1).split()[:8]).rstrip(". ")
            if value:
                return value
    return None


def _field_kind(name: str, description: str) -> str:
    def kind(words: set[str], from_description: bool) -> str | None:
        if words & {"email", "e-mail", "mail"}:
            return "email"
        if words & {"phone", "mobile", "telephone", "tel", "cell"}:
            return "phone"
        if words & {"company", "organization", "organisation", "employer", "business", "firm"}:
            return "company"
        people = {"full", "first", "last", "person", "customer", "contact", "your", "their", "user"}
        if "name" in words and (not from_description or words & people):
            return "name"
        if words & {"quantity", "qty", "many", "count", "pieces", "units"}:
            return "quantity"
        if words & {"amount", "price", "total", "cost", "budget"}:
            return "amount"
        if words & {"date", "day"}:
            return "date"
        if words & {"order", "id", "number", "reference", "ref", "ticket", "invoice", "tracking", "account"}:
            return "number"
        return None

    name_words = set(re.findall(r"[a-z]+(?:-[a-z]+)?", name.lower().replace("_", " ")))
    desc_words = set(re.findall(r"[a-z]+(?:-[a-z]+)?", description.lower()))
    return kind(name_words, False) or kind(desc_words, True) or "generic"


def _offline_extract(text: str, fields: dict[str, str]) -> dict[str, Any]:
    emails = _find_emails(text)
    phones = _find_phones(text)
    kinds = {name: _field_kind(name, desc) for name, desc in fields.items()}
    # Numbers inside a phone number are not order ids when the workflow also asks for a phone.
    # A mask of characters already used (not a list of spans: many spans would make checks quadratic).
    taken = bytearray(len(text) + 1)
    for _, a, b in emails + (phones if "phone" in kinds.values() else []):
        taken[a:b] = b"\x01" * (b - a)
    found: dict[str, Any] = {}
    for name, kind in kinds.items():
        value: Any = None
        if kind == "email" and emails:
            value = emails[0][0]
        elif kind == "phone" and phones:
            value = phones[0][0]
        elif kind == "name":
            value = _find_name(text)
        elif kind == "company":
            value = _find_company(text)
        elif kind == "quantity":
            value = _find_quantity(text, taken)
        elif kind == "amount":
            m = _AMOUNT_RE.search(text)
            value = float((m.group(1) or m.group(2)).replace(",", ".")) if m else None
        elif kind == "date":
            m = _DATE_RE.search(text)
            value = m.group(1) if m else None
        elif kind == "number":
            value = next(
                (m.group(0) for m in _NUMBER_ID_RE.finditer(text) if not taken[m.start()]),
                None,
            )
        if value is None:
            value = _find_generic(text, name)
        if value is not None and value != "":
            found[name] = value
    return found


def _offline_classify(text: str, labels: dict[str, str]) -> tuple[str | None, float]:
    """Word-overlap scoring of ``text`` against each label's name and description, idf-weighted."""
    # Digits and single letters ("3 t-shirts") say nothing about an intent.
    query = {t for t in _terms(text) if len(t) > 1 and not t.isdigit()}
    if not labels or not query:
        return None, 0.0
    label_terms = {
        lab: set(_terms(lab.replace("_", " ").replace("-", " ") + " " + desc)) for lab, desc in labels.items()
    }
    n = len(labels)
    df: dict[str, int] = {}
    for terms in label_terms.values():
        for t in terms:
            df[t] = df.get(t, 0) + 1
    # Words no label knows weigh like the rarest label word: a message full of them fits nothing.
    weight = {t: math.log(1 + n / df.get(t, 1)) for t in query}
    total = sum(weight.values())
    scores = {lab: sum(weight[t] for t in query & terms) for lab, terms in label_terms.items()}
    ranked = sorted(scores.items(), key=lambda kv: -kv[1])  # stable: ties keep the labels' order
    best_label, best = ranked[0]
    second = ranked[1][1] if len(ranked) > 1 else 0.0
    if best <= 0:
        return None, 0.0
    coverage = min(1.0, best / total)
    margin = (best - second) / best
    confidence = round(coverage * (0.5 + 0.5 * margin), 4)
    if confidence < OFFLINE_MIN_CONFIDENCE:
        return None, 0.0
    return best_label, confidence


#: Below this the offline classifier answers None ("nothing fits").
OFFLINE_MIN_CONFIDENCE = 0.12


# ---------------------------------------------------------------------------------------------
# Offline provider
# ---------------------------------------------------------------------------------------------


class OfflineProvider:
    """Deterministic, local, no network: grounded in the prompt's knowledge and the user's message.

    Every response says ``provider="offline"`` and a model ``offline-<tier>``; usage is estimated with
    :func:`count_tokens` and priced at the tier's prices, so costs are comparable with the real thing.
    """

    name = "offline"

    def __init__(self, settings: Settings | None = None, *, tiers: Mapping[str, Tier] | None = None) -> None:
        self.settings = settings or get_settings()
        self.tiers: Mapping[str, Tier] = tiers if tiers is not None else self.settings.TIERS

    def _respond(self, text: str, tier: str, prompt_tokens: int, started: float) -> LLMResponse:
        if tier not in self.tiers:
            raise _unknown_tier(tier, self.tiers)
        usage = Usage(prompt_tokens, count_tokens(text))
        return LLMResponse(
            text=text,
            model=f"offline-{tier}",
            tier=tier,
            provider="offline",
            usage=usage,
            cost_usd=price(tier, usage, tiers=self.tiers),
            latency_ms=(time.perf_counter() - started) * 1000,
        )

    def chat(
        self,
        messages: list[Message],
        *,
        tier: str = "cheap",
        model: str | None = None,
        temperature: float = 0.2,
        max_tokens: int | None = None,
        tools: list[dict[str, Any]] | None = None,
        json_mode: bool = False,
        on_token: Callable[[str], None] | None = None,
        timeout_s: float | None = None,
    ) -> LLMResponse:
        started = time.perf_counter()
        system = "\n".join(_content_text(m.get("content")) for m in messages if m.get("role") == "system")
        users = [_content_text(m.get("content")) for m in messages if m.get("role") == "user"]
        user = users[-1] if users else ""
        index = _index_prompt(system)
        if index.sentences:
            steps = "step" in index.instruction.lower()
            text = _grounded_answer(index, user, whole_passage=steps) or (
                "I'm sorry, I don't have information about that."
            )
        else:
            text = _acknowledge(index.instruction, user)
        if max_tokens is not None and count_tokens(text) > max_tokens:
            text = text[: max(1, max_tokens) * 4].rstrip()
        if json_mode:
            text = json.dumps({"reply": text})
        if on_token is not None:
            for chunk in _chunks(text):
                on_token(chunk)
        return self._respond(text, tier, _prompt_tokens(messages), started)

    def classify(
        self, text: str, labels: dict[str, str], *, tier: str = "cheap"
    ) -> tuple[str | None, float, LLMResponse]:
        started = time.perf_counter()
        label, confidence = _offline_classify(text, labels)
        reply = json.dumps({"label": label, "confidence": confidence})
        prompt = text + "\n" + "\n".join(f"{k}: {v}" for k, v in labels.items())
        return label, confidence, self._respond(reply, tier, count_tokens(prompt), started)

    def extract(
        self, text: str, fields: dict[str, str], *, tier: str = "cheap"
    ) -> tuple[dict[str, Any], LLMResponse]:
        started = time.perf_counter()
        found = _offline_extract(text, fields)
        prompt = text + "\n" + "\n".join(f"{k}: {v}" for k, v in fields.items())
        return found, self._respond(json.dumps(found), tier, count_tokens(prompt), started)


# ---------------------------------------------------------------------------------------------
# OpenAI-compatible provider
# ---------------------------------------------------------------------------------------------

DEFAULT_BASE_URL = "https://api.openai.com/v1"
#: The longest Retry-After we honour (seconds); a longer one is cut to this (and to the call's deadline).
RETRY_AFTER_CAP_S = 10.0
#: No attempt starts with less than this left before the call's deadline.
MIN_ATTEMPT_S = 0.05


def breaker_for(base_url: str, settings: Settings | None = None) -> pybreaker.CircuitBreaker:
    """The circuit breaker of one base URL, shared through Redis by every worker (runtime/breakers.py;
    created with the first caller's settings)."""
    from runtime import breakers

    return breakers.breaker_for(
        "llm",
        breakers.url_key(base_url),
        settings,
        # Caller errors (400, 401, 404...) say nothing about the provider's health.
        exclude=[_is_caller_error],
    )


def reset_breakers() -> None:
    """Close and forget every circuit breaker (tests; an operator's "retry now")."""
    from runtime import breakers

    breakers.reset_breakers()


class _DeadlineExceeded(Exception):
    """The call's own deadline passed (between streamed chunks, or before an attempt)."""


class _CallbackError(Exception):
    """``on_token`` raised: not the provider's fault, re-raised as is after the call."""

    def __init__(self, original: BaseException) -> None:
        super().__init__(str(original))
        self.original = original


def _status(exc: BaseException) -> int | None:
    code = getattr(exc, "status_code", None)
    return code if isinstance(code, int) else None


def _is_transient(exc: BaseException) -> bool:
    """Worth retrying: 408/409/429/5xx, timeouts, connection failures."""
    import openai

    status = _status(exc)
    if isinstance(exc, openai.APIStatusError) and status is not None:
        return status in (408, 409, 429) or status >= 500
    return isinstance(exc, openai.APIConnectionError | _DeadlineExceeded)


def _is_caller_error(exc: BaseException) -> bool:
    if isinstance(exc, _CallbackError):
        return True
    status = _status(exc)
    return status is not None and 400 <= status < 500 and status not in (408, 409, 429)


def _retry_after_s(exc: BaseException | None) -> float | None:
    """Seconds the server asked us to wait (``retry-after-ms``, ``Retry-After`` seconds or HTTP date)."""
    response = getattr(exc, "response", None)
    headers = getattr(response, "headers", None)
    if headers is None:
        return None
    try:
        if headers.get("retry-after-ms"):
            return max(0.0, float(headers["retry-after-ms"]) / 1000)
        value = headers.get("retry-after")
        if not value:
            return None
        try:
            return max(0.0, float(value))
        except ValueError:
            when = email.utils.parsedate_to_datetime(value)
            return max(0.0, (when - datetime.now(UTC)).total_seconds())
    except (TypeError, ValueError):
        return None


@dataclass
class _CallState:
    deadline: float
    timeout_s: float
    #: Tokens already handed to on_token: a retry would repeat them, so a streaming call is not retried.
    emitted: bool = False


@dataclass
class _Result:
    text: str
    model: str
    usage: Usage | None
    tool_calls: list[dict[str, Any]] = field(default_factory=list)


def _tool_call_dict(call_id: str | None, name: str, arguments: str) -> dict[str, Any]:
    try:
        args = json.loads(arguments) if arguments.strip() else {}
    except ValueError:
        args = None
    if not isinstance(args, dict):
        args = {"_raw": arguments}
    return {"id": call_id or "", "name": name, "arguments": args}


class OpenAIProvider:
    """Chat completions over the ``openai`` SDK at any OpenAI-compatible base URL.

    Resilience: ``timeout_s`` bounds the whole call, retries included; transient failures (429, 5xx,
    timeouts, connection errors) are retried with exponential backoff and jitter (tenacity), honouring
    ``Retry-After`` up to :data:`RETRY_AFTER_CAP_S`; every attempt goes through the base URL's circuit
    breaker (pybreaker, state shared through Redis: runtime/breakers.py), so ``LLM_BREAKER_FAILS``
    consecutive failed attempts, by any worker, open it and later calls
    fail fast for ``LLM_BREAKER_RESET_S``. Every failure surfaces as :class:`LLMError`.
    """

    name = "openai"
    #: Exponential backoff: first wait, cap, and jitter (seconds).
    backoff_initial_s = 0.2
    backoff_max_s = 4.0
    backoff_jitter_s = 0.2

    def __init__(
        self,
        settings: Settings | None = None,
        *,
        api_key: str | None = None,
        base_url: str | None = None,
        tiers: Mapping[str, Tier] | None = None,
    ) -> None:
        import openai

        self.settings = settings or get_settings()
        s = self.settings
        key = api_key or (s.OPENAI_API_KEY.get_secret_value() if s.OPENAI_API_KEY else None)
        self.base_url = (base_url or s.OPENAI_BASE_URL or DEFAULT_BASE_URL).rstrip("/")
        self.tiers: Mapping[str, Tier] = tiers if tiers is not None else s.TIERS
        self.max_retries = max(0, s.LLM_MAX_RETRIES)
        # Local servers (vLLM, Ollama) take any key; the SDK insists on one.
        self._client = openai.OpenAI(
            base_url=self.base_url, api_key=key or "unused", timeout=s.LLM_TIMEOUT_S, max_retries=0
        )
        breaker_for(self.base_url, s)

    @property
    def _breaker(self) -> pybreaker.CircuitBreaker:
        # Looked up per call, so reset_breakers() also reaches providers created (and cached) earlier.
        return breaker_for(self.base_url, self.settings)

    # -- the call ---------------------------------------------------------------------------------

    def chat(
        self,
        messages: list[Message],
        *,
        tier: str = "cheap",
        model: str | None = None,
        temperature: float = 0.2,
        max_tokens: int | None = None,
        tools: list[dict[str, Any]] | None = None,
        json_mode: bool = False,
        on_token: Callable[[str], None] | None = None,
        timeout_s: float | None = None,
    ) -> LLMResponse:
        started = time.perf_counter()
        if tier not in self.tiers:
            raise _unknown_tier(tier, self.tiers)
        model_name = model or self.tiers[tier].model
        kwargs: dict[str, Any] = {"model": model_name, "messages": messages, "temperature": temperature}
        if max_tokens is not None:
            kwargs["max_tokens"] = max_tokens
        if tools:
            kwargs["tools"] = tools
        if json_mode:
            kwargs["response_format"] = {"type": "json_object"}
        timeout = timeout_s if timeout_s is not None else self.settings.LLM_TIMEOUT_S
        state = _CallState(deadline=time.monotonic() + timeout, timeout_s=timeout)
        result = self._with_retries(lambda: self._attempt(kwargs, on_token, state), state)
        usage = result.usage
        if usage is None:
            completion = result.text + "".join(json.dumps(c["arguments"]) for c in result.tool_calls)
            usage = Usage(_prompt_tokens(messages), count_tokens(completion))
        # An explicit model is priced as its own tier when the deployment knows it.
        price_key = model if model and _tier_of(model, self.tiers) else tier
        return LLMResponse(
            text=result.text,
            model=result.model or model_name,
            tier=tier,
            provider="openai",
            usage=usage,
            cost_usd=price(price_key, usage, tiers=self.tiers),
            latency_ms=(time.perf_counter() - started) * 1000,
            tool_calls=result.tool_calls,
        )

    def _with_retries(self, attempt: Callable[[], _Result], state: _CallState) -> _Result:
        import openai
        import pybreaker
        import tenacity

        def wait(retry_state: tenacity.RetryCallState) -> float:
            exc = retry_state.outcome.exception() if retry_state.outcome else None
            after = _retry_after_s(exc)
            if after is not None:
                return min(after, RETRY_AFTER_CAP_S)
            backoff = self.backoff_initial_s * 2 ** (retry_state.attempt_number - 1)
            return min(self.backoff_max_s, backoff) + random.uniform(0, self.backoff_jitter_s)

        def stop(retry_state: tenacity.RetryCallState) -> bool:
            if retry_state.attempt_number > self.max_retries:
                return True
            # No point sleeping past the deadline: the next attempt would have no time left.
            return time.monotonic() + (retry_state.upcoming_sleep or 0) >= state.deadline - MIN_ATTEMPT_S

        retrying = tenacity.Retrying(
            retry=tenacity.retry_if_exception(lambda e: _is_transient(e) and not state.emitted),
            wait=wait,
            stop=stop,
            reraise=True,
        )
        try:
            return retrying(attempt)
        except _CallbackError as exc:
            raise exc.original from None
        except LLMError:
            raise
        except pybreaker.CircuitBreakerError as exc:
            raise LLMError(
                f"circuit open for {self.base_url}: {self._breaker.fail_max} consecutive failures; "
                f"failing fast for up to {self._breaker.reset_timeout:g}s"
            ) from exc
        except Exception as exc:
            attempts = retrying.statistics.get("attempt_number", 1)
            tried = f"after {attempts} attempt{'s' if attempts != 1 else ''}"
            if isinstance(exc, openai.APITimeoutError | _DeadlineExceeded):
                msg = f"timed out after {state.timeout_s:g}s ({tried})"
            elif isinstance(exc, openai.APIStatusError):
                msg = f"HTTP {exc.status_code} {tried}: {exc.message}"
            elif isinstance(exc, openai.APIConnectionError):
                msg = f"cannot connect ({tried}): {exc}"
            else:
                msg = f"bad response ({type(exc).__name__}: {exc})"
            raise LLMError(f"LLM call to {self.base_url} failed: {msg}") from exc

    def _attempt(
        self, kwargs: dict[str, Any], on_token: Callable[[str], None] | None, state: _CallState
    ) -> _Result:
        remaining = state.deadline - time.monotonic()
        if remaining < MIN_ATTEMPT_S:
            raise _DeadlineExceeded("no time left for another attempt")
        # ``calling()`` keeps the breaker's lock for the state check only; ``breaker.call(fn)`` would
        # hold it for the whole request and serialise every LLM call of the process per base URL.
        with self._breaker.calling():
            if on_token is None:
                return self._complete(kwargs, remaining)
            return self._stream(kwargs, remaining, on_token, state)

    def _complete(self, kwargs: dict[str, Any], timeout: float) -> _Result:
        resp = self._client.chat.completions.create(**kwargs, timeout=timeout)
        if not resp.choices:
            raise ValueError("the response has no choices")
        message = resp.choices[0].message
        calls = []
        for call in message.tool_calls or []:
            fn = getattr(call, "function", None)
            if fn is not None:
                calls.append(_tool_call_dict(call.id, fn.name, fn.arguments or ""))
        usage = Usage(resp.usage.prompt_tokens, resp.usage.completion_tokens) if resp.usage else None
        return _Result(message.content or "", resp.model, usage, calls)

    def _stream(
        self, kwargs: dict[str, Any], timeout: float, on_token: Callable[[str], None], state: _CallState
    ) -> _Result:
        stream = self._client.chat.completions.create(
            **kwargs, stream=True, stream_options={"include_usage": True}, timeout=timeout
        )
        parts: list[str] = []
        calls: dict[int, dict[str, str]] = {}
        usage: Usage | None = None
        model = ""
        try:
            for chunk in stream:
                # The SDK's timeout is per read; this bounds the whole stream by the call's deadline.
                if time.monotonic() > state.deadline:
                    raise _DeadlineExceeded("stream exceeded the call's deadline")
                model = model or chunk.model
                if chunk.usage:
                    usage = Usage(chunk.usage.prompt_tokens, chunk.usage.completion_tokens)
                for choice in chunk.choices[:1]:
                    delta = choice.delta
                    if delta.content:
                        parts.append(delta.content)
                        state.emitted = True
                        try:
                            on_token(delta.content)
                        except Exception as exc:
                            raise _CallbackError(exc) from exc
                    for tc in delta.tool_calls or []:
                        acc = calls.setdefault(tc.index, {"id": "", "name": "", "arguments": ""})
                        acc["id"] = tc.id or acc["id"]
                        if tc.function is not None:
                            acc["name"] += tc.function.name or ""
                            acc["arguments"] += tc.function.arguments or ""
        finally:
            stream.close()
        tool_calls = [_tool_call_dict(c["id"], c["name"], c["arguments"]) for _, c in sorted(calls.items())]
        return _Result("".join(parts), model, usage, tool_calls)

    # -- classify / extract through a JSON-mode prompt -------------------------------------------

    def classify(
        self, text: str, labels: dict[str, str], *, tier: str = "cheap"
    ) -> tuple[str | None, float, LLMResponse]:
        listing = "\n".join(f"- {name}: {desc}" for name, desc in labels.items())
        system = (
            "You classify a customer's message into exactly one of these labels.\n"
            f"Labels:\n{listing}\n"
            'Reply with a JSON object only: {"label": "<one label from the list, or null if none fits>", '
            '"confidence": <number between 0 and 1>}.'
        )
        resp = self.chat(
            [{"role": "system", "content": system}, {"role": "user", "content": text}],
            tier=tier,
            temperature=0.0,
            json_mode=True,
        )
        label, confidence = _parse_classification(resp.text, labels)
        return label, confidence, resp

    def extract(
        self, text: str, fields: dict[str, str], *, tier: str = "cheap"
    ) -> tuple[dict[str, Any], LLMResponse]:
        listing = "\n".join(f"- {name}: {desc}" for name, desc in fields.items())
        system = (
            "Extract these fields from the customer's message.\n"
            f"Fields:\n{listing}\n"
            "Reply with a JSON object only, keyed by field name. Use null for a field the message does not "
            "state; never guess."
        )
        resp = self.chat(
            [{"role": "system", "content": system}, {"role": "user", "content": text}],
            tier=tier,
            temperature=0.0,
            json_mode=True,
        )
        data = _parse_json_object(resp.text) or {}
        by_lower = {k.lower(): k for k in fields}
        found: dict[str, Any] = {}
        for key, value in data.items():
            name = key if key in fields else by_lower.get(str(key).lower())
            if name is not None and value not in (None, "", [], {}):
                found[name] = value
        return found, resp


def _parse_classification(reply: str, labels: dict[str, str]) -> tuple[str | None, float]:
    """``(label, confidence)`` from a model's reply; an unknown or missing label is None (confidence 0)."""
    by_lower = {k.lower(): k for k in labels}
    data = _parse_json_object(reply)
    if data is None:
        # Some models answer with the bare label despite JSON mode.
        bare = by_lower.get(reply.strip().strip("\"'`.").lower())
        return (bare, 0.5) if bare else (None, 0.0)
    raw = data.get("label", data.get("intent"))
    label = by_lower.get(str(raw).strip().lower()) if raw is not None else None
    if label is None:
        return None, 0.0
    try:
        confidence = float(data.get("confidence", 0.5))
    except (TypeError, ValueError):
        confidence = 0.5
    if math.isnan(confidence):
        confidence = 0.5
    return label, min(1.0, max(0.0, confidence))


# ---------------------------------------------------------------------------------------------
# Selection
# ---------------------------------------------------------------------------------------------

_PROVIDERS: dict[tuple[str | None, str | None], LLMProvider] = {}
_PROVIDERS_LOCK = threading.Lock()


def get_provider(settings: Settings | None = None) -> LLMProvider:
    """The process-wide provider: OpenAI when a key or base URL is configured, else offline."""
    s = settings or get_settings()
    key = s.OPENAI_API_KEY.get_secret_value() if s.OPENAI_API_KEY else None
    # Cache by a digest, so the key itself is not copied into another long-lived structure.
    cache_key = (hashlib.sha256(key.encode()).hexdigest() if key else None, s.OPENAI_BASE_URL)
    with _PROVIDERS_LOCK:
        provider = _PROVIDERS.get(cache_key)
        if provider is None:
            provider = OpenAIProvider(s) if key or s.OPENAI_BASE_URL else OfflineProvider(s)
            _PROVIDERS[cache_key] = provider
        return provider
