"""API keys, scopes, short-lived access JWTs and single-use link tokens. Pure: no database.

* **API keys** look like ``fd_live_<32 url-safe chars>`` (192 random bits). Only their SHA-256 is
  stored (a fast hash is right here: the secret is random, not a human password) plus a short prefix
  shown in the UI to tell keys apart.
* **Scopes**: ``workflows:read``, ``workflows:write``, ``chat``, ``admin``; ``admin`` implies every
  other scope, nothing else implies anything.
* **Access tokens** are JWTs (joserfc), HS256 only, signed with a key derived from ``SECRET_KEY`` by
  HKDF with an ``info`` used for nothing else, typed ``at+jwt`` (RFC 9068) so no other JWT the project
  signs can pass as one. Lifetime 15 minutes by default, 1 hour at most.
* **One-time tokens** (password reset, invitations): 32 random bytes; the caller stores only their
  SHA-256 with an expiry. :func:`sign_link` wraps a token in an HMAC envelope that binds it to a
  purpose and an expiry, so a reset token is never accepted as an invitation and garbage is refused
  before any database read. Single use is the caller's job, in the same transaction that acts on it::

      UPDATE password_resets SET used_at = :now
       WHERE token_hash = :hash AND used_at IS NULL AND expires_at > :now

  and proceed only when exactly one row changed (a replayed or expired link changes none).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from joserfc import jwt
from joserfc.errors import (
    BadSignatureError,
    DecodeError,
    ExpiredTokenError,
    InvalidClaimError,
    JoseError,
    MissingAlgorithmError,
    MissingClaimError,
    UnsupportedAlgorithmError,
)
from joserfc.jwk import OctKey
from joserfc.jws import JWSRegistry

from core.settings import get_settings

# --- API keys -------------------------------------------------------------------------------------

API_KEY_ENVS = ("live", "test")
#: 24 random bytes = exactly 32 url-safe base64 characters.
_API_KEY_RANDOM_BYTES = 24
API_KEY_RE = re.compile(r"^fd_(live|test)_[A-Za-z0-9_-]{32}$")
#: ``fd_live_`` + the first 6 random characters: enough to tell keys apart, useless to guess the rest.
API_KEY_PREFIX_LEN = len("fd_live_") + 6


def hash_key(plaintext: str) -> str:
    """SHA-256 hex of an API key (what the database stores and looks keys up by)."""
    return hashlib.sha256(plaintext.encode("utf-8")).hexdigest()


def new_api_key(env: str = "live") -> tuple[str, str, str]:
    """``(plaintext, prefix, sha256_hex)``. Show ``plaintext`` once; store ``prefix`` and the hash."""
    if env not in API_KEY_ENVS:
        raise ValueError(f"API key env must be one of {API_KEY_ENVS}, not {env!r}")
    plaintext = f"fd_{env}_{secrets.token_urlsafe(_API_KEY_RANDOM_BYTES)}"
    return plaintext, plaintext[:API_KEY_PREFIX_LEN], hash_key(plaintext)


def looks_like_api_key(value: str) -> bool:
    """Shape check before any database lookup (also tells API keys from JWTs in a Bearer header)."""
    return bool(API_KEY_RE.fullmatch(value))


def api_key_matches(plaintext: str, stored_hash: str) -> bool:
    """Constant-time comparison of a presented key with a stored hash."""
    return hmac.compare_digest(hash_key(plaintext), stored_hash)


# --- Scopes ---------------------------------------------------------------------------------------

WORKFLOWS_READ = "workflows:read"
WORKFLOWS_WRITE = "workflows:write"
CHAT = "chat"
ADMIN = "admin"
SCOPES: tuple[str, ...] = (WORKFLOWS_READ, WORKFLOWS_WRITE, CHAT, ADMIN)


def parse_scopes(scopes: Iterable[str] | str) -> tuple[str, ...]:
    """Validated, de-duplicated scopes in canonical order; a string is split on spaces (OAuth style).
    Raises ValueError naming any unknown scope."""
    items = scopes.split() if isinstance(scopes, str) else list(scopes)
    unknown = sorted({s for s in items if s not in SCOPES})
    if unknown:
        raise ValueError(f"unknown scope(s): {', '.join(unknown)}; known: {', '.join(SCOPES)}")
    return tuple(s for s in SCOPES if s in items)


def scopes_allow(granted: Iterable[str], required: str) -> bool:
    """Whether ``granted`` covers ``required``.

    ``admin`` implies every scope; nothing else implies anything; unknown granted scopes grant nothing.
    An unknown ``required`` scope is a programming error (a typo in a route) and raises ValueError.
    """
    if required not in SCOPES:
        raise ValueError(f"unknown scope {required!r}; known: {', '.join(SCOPES)}")
    held = set(granted)
    return ADMIN in held or required in held


# --- Errors and key derivation --------------------------------------------------------------------


class TokenError(Exception):
    """A token was refused. ``code`` is stable, for logs and API error bodies:

    ``malformed``, ``too_large``, ``bad_signature``, ``unsupported_alg``, ``wrong_type``, ``expired``,
    ``not_yet_valid``, ``wrong_audience``, ``wrong_issuer``, ``invalid_claims``.
    """

    def __init__(self, code: str, message: str) -> None:
        self.code = code
        self.message = message
        super().__init__(f"{code}: {message}")


def _secret(settings: Any) -> bytes:
    raw = settings.SECRET_KEY
    value = raw.get_secret_value() if hasattr(raw, "get_secret_value") else str(raw)
    return value.encode("utf-8")


def derive_key(settings: Any, info: bytes, length: int = 32) -> bytes:
    """A subkey of ``SECRET_KEY`` for one use (HKDF-SHA256); different ``info`` = unrelated keys."""
    return HKDF(algorithm=hashes.SHA256(), length=length, salt=None, info=info).derive(_secret(settings))


_JWT_KEY_INFO = b"flowdesk/jwt/access-token/v1"
_LINK_KEY_INFO = b"flowdesk/link/v1"


def _now(now: datetime | None) -> datetime:
    if now is None:
        return datetime.now(UTC)
    return now.replace(tzinfo=UTC) if now.tzinfo is None else now


# --- Access tokens (JWT) --------------------------------------------------------------------------

JWT_ALG = "HS256"
JWT_TYPE = "at+jwt"
DEFAULT_TTL = timedelta(minutes=15)
MAX_TTL = timedelta(hours=1)
#: Our tokens are ~400 bytes; refuse anything far bigger before parsing it.
MAX_TOKEN_CHARS = 4096
#: Clock skew tolerated on exp/nbf/iat between app processes.
LEEWAY_S = 30
DEFAULT_ISSUER = "flowdesk"
DEFAULT_AUDIENCE = "flowdesk-api"
_REGISTRY = JWSRegistry(algorithms=[JWT_ALG])


@dataclass(frozen=True)
class Claims:
    """The verified claims of an access token. ``tid`` is the tenant; ``scp`` the granted scopes."""

    iss: str
    aud: str
    sub: str
    tid: str
    scp: tuple[str, ...]
    iat: int
    nbf: int
    exp: int
    jti: str

    def allows(self, required: str) -> bool:
        return scopes_allow(self.scp, required)


def _jwt_key(settings: Any) -> OctKey:
    return OctKey.import_key(derive_key(settings, _JWT_KEY_INFO))


def mint_access_token(
    sub: str,
    tenant_id: str,
    scopes: Iterable[str],
    *,
    ttl: timedelta = DEFAULT_TTL,
    now: datetime | None = None,
    audience: str | None = None,
    settings: Any = None,
) -> str:
    """A signed access token for principal ``sub`` (e.g. ``apikey:<id>`` or ``user:<id>``) of tenant
    ``tenant_id`` with ``scopes`` (validated). ``ttl`` is at most :data:`MAX_TTL`."""
    settings = settings or get_settings()
    if not sub or not tenant_id:
        raise ValueError("sub and tenant_id are required")
    if not timedelta(0) < ttl <= MAX_TTL:
        raise ValueError(f"ttl must be positive and at most {MAX_TTL}, not {ttl}")
    issued = int(_now(now).timestamp())
    claims = {
        "iss": getattr(settings, "JWT_ISSUER", DEFAULT_ISSUER),
        "aud": audience or getattr(settings, "JWT_AUDIENCE", DEFAULT_AUDIENCE),
        "sub": str(sub),
        "tid": str(tenant_id),
        "scp": list(parse_scopes(scopes)),
        "iat": issued,
        "nbf": issued,
        "exp": issued + int(ttl.total_seconds()),
        "jti": uuid.uuid4().hex,
    }
    return jwt.encode({"alg": JWT_ALG}, claims, _jwt_key(settings), registry=_REGISTRY, default_type=JWT_TYPE)


def verify_access_token(
    token: str,
    *,
    audience: str | None = None,
    now: datetime | None = None,
    settings: Any = None,
) -> Claims:
    """Verify signature, header and claims; return them or raise :class:`TokenError`.

    Only HS256 with our derived key is accepted: ``alg: none``, RS256/ES256 (the classic
    public-key-as-HMAC-secret confusion) and any other algorithm fail as ``unsupported_alg``.
    """
    settings = settings or get_settings()
    if not isinstance(token, str) or not token:
        raise TokenError("malformed", "the token is empty")
    if len(token) > MAX_TOKEN_CHARS:
        raise TokenError("too_large", f"the token is longer than {MAX_TOKEN_CHARS} characters")
    if token.count(".") != 2:
        raise TokenError("malformed", "the token is not a compact JWS (header.payload.signature)")
    try:
        decoded = jwt.decode(token, _jwt_key(settings), registry=_REGISTRY)
    except BadSignatureError as e:
        raise TokenError("bad_signature", "the token's signature does not verify") from e
    except UnsupportedAlgorithmError as e:
        raise TokenError("unsupported_alg", f"only {JWT_ALG} tokens are accepted") from e
    except MissingAlgorithmError as e:
        raise TokenError("malformed", "the token header has no algorithm") from e
    except (DecodeError, JoseError, ValueError, TypeError) as e:
        raise TokenError("malformed", "the token cannot be decoded") from e
    if decoded.header.get("alg") != JWT_ALG:  # belt and braces: the registry already pins it
        raise TokenError("unsupported_alg", f"only {JWT_ALG} tokens are accepted")
    if decoded.header.get("typ") != JWT_TYPE:
        raise TokenError("wrong_type", f"the token is not an access token (typ {JWT_TYPE})")

    expected_aud = audience or getattr(settings, "JWT_AUDIENCE", DEFAULT_AUDIENCE)
    expected_iss = getattr(settings, "JWT_ISSUER", DEFAULT_ISSUER)
    registry = jwt.JWTClaimsRegistry(
        now=int(_now(now).timestamp()),
        leeway=LEEWAY_S,
        iss={"essential": True, "value": expected_iss},
        aud={"essential": True, "value": expected_aud},
        sub={"essential": True},
        tid={"essential": True},
        scp={"essential": True},
        iat={"essential": True},
        nbf={"essential": True},
        exp={"essential": True},
        jti={"essential": True},
    )
    claims = decoded.claims
    try:
        registry.validate(claims)
    except ExpiredTokenError as e:
        raise TokenError("expired", "the token has expired") from e
    except InvalidClaimError as e:
        code = {
            "aud": "wrong_audience",
            "iss": "wrong_issuer",
            "nbf": "not_yet_valid",
            "iat": "not_yet_valid",
        }.get(e.claim, "invalid_claims")
        raise TokenError(code, e.description) from e
    except MissingClaimError as e:
        raise TokenError("invalid_claims", e.description) from e
    return _claims_from(claims)


def _claims_from(claims: dict[str, Any]) -> Claims:
    aud, tid, scp = claims["aud"], claims["tid"], claims["scp"]
    if not isinstance(aud, str) or not isinstance(tid, str) or not tid:
        raise TokenError("invalid_claims", "aud and tid must be non-empty strings")
    if not isinstance(scp, list) or not all(isinstance(s, str) for s in scp):
        raise TokenError("invalid_claims", "scp must be a list of strings")
    if claims["exp"] - claims["iat"] > MAX_TTL.total_seconds():
        raise TokenError("invalid_claims", f"the token lives longer than {MAX_TTL}")
    try:
        scopes = parse_scopes(scp)
    except ValueError as e:
        raise TokenError("invalid_claims", str(e)) from e
    if not claims["sub"]:
        raise TokenError("invalid_claims", "sub must not be empty")
    return Claims(
        iss=claims["iss"],
        aud=aud,
        sub=claims["sub"],
        tid=tid,
        scp=scopes,
        iat=int(claims["iat"]),
        nbf=int(claims["nbf"]),
        exp=int(claims["exp"]),
        jti=claims["jti"],
    )


# --- One-time tokens and signed links -------------------------------------------------------------

LINK_PURPOSES = ("password_reset", "invitation")
_ONE_TIME_BYTES = 32
_LINK_RE = re.compile(r"^([A-Za-z0-9_-]{43})\.(\d{1,12})\.([A-Za-z0-9_-]{43})$")


def hash_token(plaintext: str) -> str:
    """SHA-256 hex of a one-time token (what the database stores and looks it up by)."""
    return hashlib.sha256(plaintext.encode("utf-8")).hexdigest()


def new_one_time_token() -> tuple[str, str]:
    """``(plaintext, sha256_hex)``: 32 random bytes, url-safe. Put ``plaintext`` in the link only."""
    plaintext = secrets.token_urlsafe(_ONE_TIME_BYTES)
    return plaintext, hash_token(plaintext)


def _link_mac(settings: Any, purpose: str, token: str, expires: int) -> str:
    key = derive_key(settings, _LINK_KEY_INFO)
    mac = hmac.new(key, f"{purpose}\n{token}\n{expires}".encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(mac).rstrip(b"=").decode("ascii")


def sign_link(purpose: str, token: str, expires: datetime, *, settings: Any = None) -> str:
    """``<token>.<expires unix>.<hmac>``: the value to put in a reset or invitation URL."""
    if purpose not in LINK_PURPOSES:
        raise ValueError(f"purpose must be one of {LINK_PURPOSES}")
    if not re.fullmatch(r"[A-Za-z0-9_-]{43}", token):
        raise ValueError("token must come from new_one_time_token()")
    settings = settings or get_settings()
    exp = int(_now(expires).timestamp())
    return f"{token}.{exp}.{_link_mac(settings, purpose, token, exp)}"


def verify_link(purpose: str, link: str, *, now: datetime | None = None, settings: Any = None) -> str:
    """Check a link value made by :func:`sign_link` for ``purpose``; return the token's SHA-256 hex, to
    look up (unused, unexpired) and mark used in the database. Raises :class:`TokenError`."""
    if purpose not in LINK_PURPOSES:
        raise ValueError(f"purpose must be one of {LINK_PURPOSES}")
    if not isinstance(link, str) or len(link) > 128:
        raise TokenError("malformed", "the link token is malformed")
    match = _LINK_RE.fullmatch(link)
    if not match:
        raise TokenError("malformed", "the link token is malformed")
    token, exp_s, mac = match.groups()
    settings = settings or get_settings()
    if not hmac.compare_digest(mac, _link_mac(settings, purpose, token, int(exp_s))):
        # A valid link for the other purpose lands here too: the purpose is inside the MAC.
        raise TokenError("bad_signature", "the link is not valid for this purpose or was altered")
    if int(_now(now).timestamp()) >= int(exp_s):
        raise TokenError("expired", "the link has expired")
    return hash_token(token)
