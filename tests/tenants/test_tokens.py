"""tenants.tokens: API keys, scopes, access JWTs (and attacks on them), one-time tokens and signed links."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import string
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from joserfc import jwt
from joserfc.jwk import OctKey, RSAKey

from tenants import tokens
from tenants.tokens import (
    ADMIN,
    CHAT,
    DEFAULT_TTL,
    LEEWAY_S,
    MAX_TOKEN_CHARS,
    MAX_TTL,
    SCOPES,
    WORKFLOWS_READ,
    WORKFLOWS_WRITE,
    TokenError,
    api_key_matches,
    derive_key,
    hash_key,
    hash_token,
    looks_like_api_key,
    mint_access_token,
    new_api_key,
    new_one_time_token,
    parse_scopes,
    scopes_allow,
    sign_link,
    verify_access_token,
    verify_link,
)

S = SimpleNamespace(SECRET_KEY="test-secret-key-number-one")
OTHER = SimpleNamespace(SECRET_KEY="test-secret-key-number-two")
NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def b64json(obj: object) -> str:
    return b64(json.dumps(obj, separators=(",", ":")).encode())


def unb64(part: str) -> bytes:
    return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))


def mint(**kw: object) -> str:
    args: dict[str, object] = {"now": NOW, "settings": S}
    args.update(kw)
    return mint_access_token("apikey:42", "tenant-a", [WORKFLOWS_READ, CHAT], **args)  # type: ignore[arg-type]


def verify(token: str, **kw: object) -> tokens.Claims:
    args: dict[str, object] = {"now": NOW, "settings": S}
    args.update(kw)
    return verify_access_token(token, **args)  # type: ignore[arg-type]


def refused(token: object, code: str, **kw: object) -> TokenError:
    with pytest.raises(TokenError) as info:
        verify(token, **kw)  # type: ignore[arg-type]
    assert info.value.code == code, info.value
    return info.value


def valid_claims(**changes: object) -> dict[str, object]:
    iat = int(NOW.timestamp())
    claims: dict[str, object] = {
        "iss": "flowdesk",
        "aud": "flowdesk-api",
        "sub": "apikey:42",
        "tid": "tenant-a",
        "scp": ["chat"],
        "iat": iat,
        "nbf": iat,
        "exp": iat + 600,
        "jti": "j1",
    }
    claims.update(changes)
    return {k: v for k, v in claims.items() if v is not None}


def sign_with_our_key(claims: dict[str, object], header: dict[str, object] | None = None) -> str:
    """A token correctly signed with the real derived key, to reach the checks after the signature."""
    key = OctKey.import_key(derive_key(S, b"flowdesk/jwt/access-token/v1"))
    return jwt.encode(header or {"alg": "HS256", "typ": "at+jwt"}, claims, key, default_type=None)


# --- API keys and scopes --------------------------------------------------------------------------


def test_api_key_shape_prefix_and_hash() -> None:
    plaintext, prefix, digest = new_api_key()
    assert plaintext.startswith("fd_live_") and len(plaintext) == len("fd_live_") + 32
    assert set(plaintext[8:]) <= set(string.ascii_letters + string.digits + "-_")
    assert looks_like_api_key(plaintext)
    assert prefix == plaintext[:14] and plaintext.startswith(prefix)
    assert digest == hashlib.sha256(plaintext.encode()).hexdigest() == hash_key(plaintext)
    assert plaintext not in digest
    assert api_key_matches(plaintext, digest)
    assert not api_key_matches(plaintext[:-1] + ("A" if plaintext[-1] != "A" else "B"), digest)
    assert new_api_key("test")[0].startswith("fd_test_")
    with pytest.raises(ValueError):
        new_api_key("prod")


def test_api_keys_are_unique_and_use_the_whole_alphabet() -> None:
    keys = [new_api_key()[0] for _ in range(2000)]
    assert len(set(keys)) == len(keys)
    assert len({k[:14] for k in keys}) > 1990  # prefixes tell keys apart
    alphabet = {c for k in keys for c in k[8:]}
    assert len(alphabet) == 64  # 6 bits per character: 192 random bits per key


@pytest.mark.parametrize(
    "value",
    [
        "",
        "fd_live_",
        "fd_live_" + "a" * 31,
        "fd_live_" + "a" * 33,
        "fd_prod_" + "a" * 32,
        "fd_live_" + "a" * 31 + "!",
    ],
)
def test_not_api_keys(value: str) -> None:
    assert not looks_like_api_key(value)


def test_scopes() -> None:
    assert scopes_allow([ADMIN], WORKFLOWS_WRITE)
    assert all(scopes_allow([ADMIN], s) for s in SCOPES)
    assert scopes_allow([WORKFLOWS_READ], WORKFLOWS_READ)
    assert not scopes_allow([WORKFLOWS_WRITE], WORKFLOWS_READ)  # nothing but admin implies anything
    assert not scopes_allow([WORKFLOWS_READ, CHAT], WORKFLOWS_WRITE)
    assert not scopes_allow([], CHAT)
    assert not scopes_allow(["superuser", "*"], CHAT)
    with pytest.raises(ValueError, match="unknown scope"):
        scopes_allow([ADMIN], "workflows:delete")


def test_parse_scopes() -> None:
    assert parse_scopes("chat workflows:read chat") == (WORKFLOWS_READ, CHAT)
    assert parse_scopes([ADMIN, WORKFLOWS_WRITE]) == (WORKFLOWS_WRITE, ADMIN)
    assert parse_scopes([]) == ()
    with pytest.raises(ValueError, match="root"):
        parse_scopes(["chat", "root"])


# --- access tokens --------------------------------------------------------------------------------


def test_mint_and_verify() -> None:
    claims = verify(mint())
    assert claims.sub == "apikey:42"
    assert claims.tid == "tenant-a"
    assert claims.scp == (WORKFLOWS_READ, CHAT)
    assert (claims.iss, claims.aud) == ("flowdesk", "flowdesk-api")
    assert claims.iat == claims.nbf == int(NOW.timestamp())
    assert claims.exp - claims.iat == DEFAULT_TTL.total_seconds() == 900
    assert len(claims.jti) == 32
    assert claims.allows(CHAT) and not claims.allows(WORKFLOWS_WRITE)
    header = json.loads(unb64(mint().split(".")[0]))
    assert header == {"typ": "at+jwt", "alg": "HS256"}


def test_each_token_has_its_own_jti() -> None:
    assert verify(mint()).jti != verify(mint()).jti


def test_default_settings_work() -> None:
    # Through core.settings.get_settings() (the dev secret here).
    token = mint_access_token("user:1", "t", [ADMIN])
    assert verify_access_token(token).tid == "t"
    with pytest.raises(TokenError):
        verify_access_token(token, settings=S)  # a different SECRET_KEY


def test_ttl_bounds() -> None:
    assert verify(mint(ttl=MAX_TTL)).exp - int(NOW.timestamp()) == 3600
    for bad in (MAX_TTL + timedelta(seconds=1), timedelta(0), timedelta(seconds=-5)):
        with pytest.raises(ValueError, match="ttl"):
            mint(ttl=bad)
    with pytest.raises(ValueError, match="unknown scope"):
        mint_access_token("s", "t", ["root"], settings=S)
    with pytest.raises(ValueError):
        mint_access_token("", "t", [CHAT], settings=S)


def test_expiry_with_leeway_at_the_boundary() -> None:
    token = mint()
    exp = NOW + DEFAULT_TTL
    verify(token, now=exp + timedelta(seconds=LEEWAY_S - 1))
    err = refused(token, "expired", now=exp + timedelta(seconds=LEEWAY_S))
    assert "expired" in err.message
    refused(token, "expired", now=NOW + timedelta(days=1))


def test_not_yet_valid() -> None:
    future = mint(now=NOW + timedelta(minutes=5))
    refused(future, "not_yet_valid")
    verify(mint(now=NOW + timedelta(seconds=LEEWAY_S - 1)))


def test_tampered_payload_is_refused() -> None:
    header, payload, sig = mint().split(".")
    claims = json.loads(unb64(payload))
    for change in ({"tid": "tenant-b"}, {"scp": ["admin"]}, {"exp": claims["exp"] + 3600}):
        refused(f"{header}.{b64json({**claims, **change})}.{sig}", "bad_signature")
    refused(f"{header}.{payload}.{sig[:-4]}AAAA", "bad_signature")
    refused(f"{header}.{payload}.", "bad_signature")


def test_wrong_key_is_refused() -> None:
    refused(mint(settings=OTHER), "bad_signature")


def test_wrong_audience_and_issuer() -> None:
    refused(mint(), "wrong_audience", audience="flowdesk-widget")
    refused(mint(audience="flowdesk-widget"), "wrong_audience")
    assert verify(mint(audience="flowdesk-widget"), audience="flowdesk-widget").aud == "flowdesk-widget"
    other_issuer = SimpleNamespace(SECRET_KEY=S.SECRET_KEY, JWT_ISSUER="someone-else")
    refused(mint(settings=other_issuer), "wrong_issuer")


@pytest.mark.parametrize("alg", ["none", "None", "NONE", "nOnE"])
def test_alg_none_is_refused(alg: str) -> None:
    payload = mint().split(".")[1]
    header = b64json({"alg": alg, "typ": "at+jwt"})
    refused(f"{header}.{payload}.", "unsupported_alg")


def test_rs256_tokens_and_hmac_with_the_public_key_are_refused() -> None:
    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    rsa_key = RSAKey.import_key(
        private.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    rs256 = jwt.encode({"alg": "RS256", "typ": "at+jwt"}, valid_claims(), rsa_key, default_type=None)
    refused(rs256, "unsupported_alg")

    # The classic confusion: HMAC-sign with the (public) RSA key bytes, hoping the verifier uses them.
    public_pem = private.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    signing_input = f"{b64json({'alg': 'HS256', 'typ': 'at+jwt'})}.{b64json(valid_claims())}"
    mac = hmac.new(public_pem, signing_input.encode(), hashlib.sha256).digest()
    confused = f"{signing_input}.{b64(mac)}"
    refused(confused, "bad_signature")

    # An RS256 header over a correct HS256 signature with our own key is refused by the header alone.
    good = sign_with_our_key(valid_claims())
    _, payload, sig = good.split(".")
    refused(f"{b64json({'alg': 'RS256', 'typ': 'at+jwt'})}.{payload}.{sig}", "unsupported_alg")


def test_other_jwt_types_signed_with_our_key_are_refused() -> None:
    refused(sign_with_our_key(valid_claims(), {"alg": "HS256", "typ": "JWT"}), "wrong_type")
    refused(sign_with_our_key(valid_claims(), {"alg": "HS256"}), "wrong_type")
    assert verify(sign_with_our_key(valid_claims())).tid == "tenant-a"  # the control


@pytest.mark.parametrize(
    ("changes", "code"),
    [
        ({"tid": None}, "invalid_claims"),
        ({"jti": None}, "invalid_claims"),
        ({"exp": None}, "invalid_claims"),
        ({"scp": None}, "invalid_claims"),
        ({"tid": ""}, "invalid_claims"),
        ({"sub": ""}, "invalid_claims"),
        ({"scp": ["root"]}, "invalid_claims"),
        ({"scp": "admin"}, "invalid_claims"),
        ({"tid": 7}, "invalid_claims"),
        ({"exp": "soon"}, "invalid_claims"),
        ({"exp": int(NOW.timestamp()) + 7200}, "invalid_claims"),  # lives longer than MAX_TTL
        ({"aud": ["flowdesk-api", "other"]}, "invalid_claims"),
        ({"iat": int(NOW.timestamp()) + 3600}, "not_yet_valid"),
    ],
)
def test_bad_claims_are_refused(changes: dict[str, object], code: str) -> None:
    refused(sign_with_our_key(valid_claims(**changes)), code)


@pytest.mark.parametrize(
    "value",
    [
        "",
        "abc",
        "a.b",
        "a.b.c",
        "...",
        "a.b.c.d",
        "eyJ!!!.eyJ.sig",
        f"{b64(b'not json')}.{b64json({})}.sig",
        f"{b64json(['HS256'])}.{b64json({})}.sig",
        "Bearer " + "x" * 20,
    ],
)
def test_malformed_tokens(value: str) -> None:
    err = refused(value, "malformed")
    assert err.message


def test_signed_payloads_that_are_not_claims_objects_are_malformed() -> None:
    # The signature is checked first (an unsigned garbage payload is a bad signature); a payload
    # correctly signed with our key that is not a JSON object is malformed.
    key = derive_key(S, b"flowdesk/jwt/access-token/v1")
    header = b64json({"alg": "HS256", "typ": "at+jwt"})
    for payload in (b"not json", b'["tid"]', b'"string"'):
        signing_input = f"{header}.{b64(payload)}"
        sig = b64(hmac.new(key, signing_input.encode(), hashlib.sha256).digest())
        refused(f"{signing_input}.{sig}", "malformed")
    refused(f"{header}.{b64(b'not json')}.sig", "bad_signature")


def test_non_string_is_malformed() -> None:
    refused(None, "malformed")
    refused(b"a.b.c", "malformed")


def test_huge_tokens_are_refused_before_parsing() -> None:
    refused("a" * (MAX_TOKEN_CHARS + 1), "too_large")
    signed_huge = sign_with_our_key(valid_claims(pad="x" * MAX_TOKEN_CHARS))
    refused(signed_huge, "too_large")


# --- key derivation, one-time tokens, links --------------------------------------------------------


def test_derived_keys_are_separate_and_deterministic() -> None:
    a = derive_key(S, b"flowdesk/jwt/access-token/v1")
    assert a == derive_key(S, b"flowdesk/jwt/access-token/v1")
    assert a != derive_key(S, b"flowdesk/link/v1")
    assert a != derive_key(OTHER, b"flowdesk/jwt/access-token/v1")
    assert S.SECRET_KEY.encode() not in a and len(a) == 32


def test_one_time_tokens() -> None:
    pairs = [new_one_time_token() for _ in range(2000)]
    assert len({p for p, _ in pairs}) == 2000
    for plaintext, digest in pairs[:10]:
        assert len(plaintext) == 43  # 32 bytes
        assert digest == hashlib.sha256(plaintext.encode()).hexdigest() == hash_token(plaintext)


def test_signed_link_roundtrip_and_refusals() -> None:
    token, digest = new_one_time_token()
    expires = NOW + timedelta(hours=1)
    link = sign_link("password_reset", token, expires, settings=S)
    assert link.startswith(token + ".")
    assert verify_link("password_reset", link, now=NOW, settings=S) == digest

    def link_refused(code: str, purpose: str = "password_reset", value: str = link, **kw: object) -> None:
        args: dict[str, object] = {"now": NOW, "settings": S}
        args.update(kw)
        with pytest.raises(TokenError) as info:
            verify_link(purpose, value, **args)  # type: ignore[arg-type]
        assert info.value.code == code

    link_refused("expired", now=expires)
    link_refused("bad_signature", purpose="invitation")  # a reset link is not an invitation
    link_refused("bad_signature", settings=OTHER)
    tok, exp, mac = link.split(".")
    link_refused("bad_signature", value=f"{tok}.{int(exp) + 86400}.{mac}")  # extended expiry
    other_token = new_one_time_token()[0]
    link_refused("bad_signature", value=f"{other_token}.{exp}.{mac}")
    for bad in ("", "x", f"{tok}.{exp}", f"{tok}.-1.{mac}", link + ".x", link + "=", "a" * 500):
        link_refused("malformed", value=bad)
    with pytest.raises(ValueError):
        sign_link("login", token, expires, settings=S)
    with pytest.raises(ValueError):
        sign_link("invitation", "short", expires, settings=S)
    with pytest.raises(ValueError):
        verify_link("login", link, settings=S)
