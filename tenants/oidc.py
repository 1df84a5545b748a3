"""OIDC login (authorization-code flow with PKCE S256, state and nonce) through Authlib's Starlette client.

Configured by the operator: ``OIDC_ISSUER``, ``OIDC_CLIENT_ID``, ``OIDC_CLIENT_SECRET`` (empty = a
public client, ``token_endpoint_auth_method=none``), ``OIDC_SCOPES`` (default ``openid email
profile``), optionally ``OIDC_REDIRECT_URI`` (when the app sits behind a proxy that rewrites the
host) and ``OIDC_TIMEOUT_S``. Endpoints come from ``<issuer>/.well-known/openid-configuration``; the
document's ``issuer`` must equal ``OIDC_ISSUER`` exactly (OIDC Discovery §4.3), and Authlib then checks
the ID token's signature (the issuer's JWKS), ``iss``, ``aud``, ``exp`` and ``nonce``.

Usage::

    app = Starlette(
        routes=[Mount("/auth/oidc", app=oidc_routes(on_login))],
        middleware=[Middleware(SessionMiddleware, secret_key=..., same_site="lax", https_only=True)],
    )

``SessionMiddleware`` carries the state, nonce and PKCE verifier between ``/login`` and
``/callback`` (a signed cookie). It must be ``same_site="lax"`` (not ``strict``): the provider sends
the browser back with a cross-site top-level GET, which a strict cookie would not accompany.

``on_login(claims, request)`` (sync or async) receives the verified :class:`OIDCClaims` and returns the
response (typically: find or create the user, start the app session, redirect). Trust ``email`` for
linking to an existing account only when ``email_verified`` is true; the stable identity is
``(iss, sub)``.

Outbound HTTP (discovery, JWKS, token and userinfo endpoints) goes to the issuer without the SSRF
guard used for tenant-configured URLs: the issuer is set by the operator in the deployment's
environment, never by a tenant or a request, so it is trusted configuration (and may legitimately be
an internal identity provider). The issuer must be ``https://`` except on loopback hosts.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import httpx
from authlib.common.errors import AuthlibBaseError
from authlib.integrations.starlette_client import OAuth, OAuthError
from authlib.integrations.starlette_client.apps import StarletteOAuth2App
from joserfc.errors import JoseError
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route, Router

from core.settings import get_settings

log = logging.getLogger("flowdesk.oidc")

# Authlib's HTTP client is httpx2 when installed (it is, through openai), else httpx: catch both.
try:
    import httpx2

    HTTP_ERRORS: tuple[type[Exception], ...] = (httpx.HTTPError, httpx2.HTTPError)
except ImportError:  # pragma: no cover - depends on the installed tree
    HTTP_ERRORS = (httpx.HTTPError,)

CLIENT_NAME = "oidc"
DEFAULT_SCOPES = "openid email profile"
DEFAULT_TIMEOUT_S = 10.0
LOOPBACK_HOSTS = frozenset({"localhost", "127.0.0.1", "::1"})


class OIDCConfigError(ValueError):
    """OIDC is misconfigured (or the provider's discovery document contradicts the configuration)."""


@dataclass(frozen=True)
class OIDCConfig:
    issuer: str
    client_id: str
    client_secret: str | None
    scopes: str
    redirect_uri: str | None
    timeout_s: float

    @property
    def discovery_url(self) -> str:
        # OIDC Discovery §4: a trailing "/" of the issuer is removed before appending the path.
        return self.issuer.rstrip("/") + "/.well-known/openid-configuration"

    def __repr__(self) -> str:  # never print the client secret
        return f"OIDCConfig(issuer={self.issuer!r}, client_id={self.client_id!r}, scopes={self.scopes!r})"


@dataclass(frozen=True)
class OIDCClaims:
    """Verified identity from the provider. ``(iss, sub)`` is the stable key."""

    sub: str
    iss: str
    email: str | None
    email_verified: bool
    name: str | None


def _plain(value: Any) -> str | None:
    if value is None:
        return None
    text = value.get_secret_value() if hasattr(value, "get_secret_value") else str(value)
    return text.strip() or None


def oidc_enabled(settings: Any = None) -> bool:
    """Whether OIDC login is configured (issuer and client id set)."""
    settings = settings or get_settings()
    return bool(
        _plain(getattr(settings, "OIDC_ISSUER", None)) and _plain(getattr(settings, "OIDC_CLIENT_ID", None))
    )


def oidc_config(settings: Any = None) -> OIDCConfig:
    """Read and validate the OIDC settings; raises :class:`OIDCConfigError`."""
    settings = settings or get_settings()
    issuer = _plain(getattr(settings, "OIDC_ISSUER", None))
    client_id = _plain(getattr(settings, "OIDC_CLIENT_ID", None))
    if not issuer or not client_id:
        raise OIDCConfigError("OIDC is not configured: set OIDC_ISSUER and OIDC_CLIENT_ID")
    parts = urlsplit(issuer)
    if parts.scheme not in {"https", "http"} or not parts.hostname or parts.query or parts.fragment:
        raise OIDCConfigError(f"OIDC_ISSUER must be an https URL without query or fragment: {issuer!r}")
    if parts.scheme == "http" and parts.hostname not in LOOPBACK_HOSTS:
        raise OIDCConfigError("OIDC_ISSUER must use https (plain http is allowed on loopback only)")
    scopes = _plain(getattr(settings, "OIDC_SCOPES", None)) or DEFAULT_SCOPES
    if "openid" not in scopes.split():
        raise OIDCConfigError("OIDC_SCOPES must include 'openid'")
    return OIDCConfig(
        issuer=issuer,
        client_id=client_id,
        client_secret=_plain(getattr(settings, "OIDC_CLIENT_SECRET", None)),
        scopes=scopes,
        redirect_uri=_plain(getattr(settings, "OIDC_REDIRECT_URI", None)),
        timeout_s=float(getattr(settings, "OIDC_TIMEOUT_S", DEFAULT_TIMEOUT_S)),
    )


def make_oauth(settings: Any = None) -> OAuth:
    """An Authlib ``OAuth`` registry with the provider registered as ``"oidc"`` (no network yet:
    discovery happens on the first login)."""
    config = oidc_config(settings)
    client_kwargs: dict[str, Any] = {
        "scope": config.scopes,
        "code_challenge_method": "S256",
        "timeout": config.timeout_s,
    }
    if not config.client_secret:
        client_kwargs["token_endpoint_auth_method"] = "none"
    oauth = OAuth()
    oauth.register(
        name=CLIENT_NAME,
        client_id=config.client_id,
        client_secret=config.client_secret,
        server_metadata_url=config.discovery_url,
        client_kwargs=client_kwargs,
    )
    return oauth


async def _checked_client(oauth: OAuth, config: OIDCConfig) -> StarletteOAuth2App:
    client = oauth.create_client(CLIENT_NAME)
    if client is None:
        raise OIDCConfigError("the OAuth registry has no 'oidc' client (use make_oauth)")
    metadata = await client.load_server_metadata()
    if metadata.get("issuer") != config.issuer:
        # A discovery document for another issuer means a misconfiguration or a mix-up attack.
        raise OIDCConfigError(
            f"the provider's discovery document names issuer {metadata.get('issuer')!r}, "
            f"not the configured {config.issuer!r}"
        )
    for field in ("authorization_endpoint", "token_endpoint", "jwks_uri"):
        if not metadata.get(field):
            raise OIDCConfigError(f"the provider's discovery document has no {field}")
    return client


def _error(status: int, code: str, message: str) -> JSONResponse:
    return JSONResponse({"error": {"code": code, "message": message}}, status_code=status)


def _is_true(value: Any) -> bool:
    # Some providers send "true" as a string.
    return value is True or (isinstance(value, str) and value.lower() == "true")


OnLogin = Callable[[OIDCClaims, Request], Response | Awaitable[Response]]


def oidc_routes(on_login: OnLogin, *, settings: Any = None, oauth: OAuth | None = None) -> Router:
    """A Router with ``GET /login`` (``oidc_login``: redirect to the provider) and ``GET /callback``
    (``oidc_callback``: verify, then ``on_login(claims, request)``). Needs ``SessionMiddleware``."""
    config = oidc_config(settings)
    registry = oauth or make_oauth(settings)

    async def login(request: Request) -> Response:
        try:
            client = await _checked_client(registry, config)
        except OIDCConfigError as e:
            log.error("OIDC login unavailable: %s", e)
            return _error(
                502, "oidc_misconfigured", "Single sign-on is misconfigured; contact your administrator."
            )
        except (*HTTP_ERRORS, AuthlibBaseError, ValueError) as e:
            log.warning("OIDC discovery failed for %s: %s", config.issuer, e)
            return _error(
                502, "oidc_unavailable", "The identity provider cannot be reached; try again later."
            )
        redirect_uri = config.redirect_uri or str(request.url_for("oidc_callback"))
        return await client.authorize_redirect(request, redirect_uri)

    async def callback(request: Request) -> Response:
        try:
            client = await _checked_client(registry, config)
        except OIDCConfigError as e:
            log.error("OIDC callback refused: %s", e)
            return _error(
                502, "oidc_misconfigured", "Single sign-on is misconfigured; contact your administrator."
            )
        except (*HTTP_ERRORS, AuthlibBaseError, ValueError) as e:
            log.warning("OIDC discovery failed for %s: %s", config.issuer, e)
            return _error(
                502, "oidc_unavailable", "The identity provider cannot be reached; try again later."
            )
        returned_iss = request.query_params.get("iss")
        if returned_iss is not None and returned_iss != config.issuer:
            # RFC 9207: the response names another issuer (mix-up attack).
            return _error(400, "oidc_wrong_issuer", "The sign-in response came from an unexpected issuer.")
        try:
            # Checks the state against the session (and clears it: a callback URL works once), sends
            # the PKCE verifier, verifies the ID token (signature, iss, aud, exp, nonce).
            token = await client.authorize_access_token(request)
        except OAuthError as e:
            log.info("OIDC callback refused: %s", e)
            code = "oidc_state" if e.error == "mismatching_state" else "oidc_denied"
            return _error(400, code, "Sign-in failed or was cancelled; please start again.")
        except (JoseError, AuthlibBaseError) as e:
            log.warning("OIDC ID token refused: %s", e)
            return _error(400, "oidc_invalid_token", "The identity provider's token was not valid.")
        except HTTP_ERRORS as e:
            log.warning("OIDC token exchange failed: %s", e)
            return _error(
                502, "oidc_unavailable", "The identity provider cannot be reached; try again later."
            )
        claims = await _claims(client, token)
        if claims is None:
            return _error(400, "oidc_invalid_token", "The identity provider returned no verified identity.")
        result = on_login(claims, request)
        if inspect.isawaitable(result):
            result = await result
        return result

    return Router(
        routes=[
            Route("/login", login, methods=["GET"], name="oidc_login"),
            Route("/callback", callback, methods=["GET"], name="oidc_callback"),
        ]
    )


async def _claims(client: StarletteOAuth2App, token: dict[str, Any]) -> OIDCClaims | None:
    id_claims = token.get("userinfo")  # set by Authlib only after the ID token verified
    if not id_claims or not isinstance(id_claims.get("sub"), str) or not id_claims.get("sub"):
        return None
    merged = dict(id_claims)
    if "email" not in merged and token.get("access_token"):
        # Some providers put profile claims only behind the userinfo endpoint.
        try:
            extra = await client.userinfo(token=token)
        except (*HTTP_ERRORS, AuthlibBaseError) as e:
            log.info("OIDC userinfo unavailable: %s", e)
            extra = {}
        if extra.get("sub") == merged["sub"]:  # OIDC Core §5.3.2: must match the ID token's sub
            for key in ("email", "email_verified", "name"):
                merged.setdefault(key, extra.get(key))
    email, name = merged.get("email"), merged.get("name")
    return OIDCClaims(
        sub=merged["sub"],
        iss=str(merged["iss"]),
        email=email if isinstance(email, str) and email else None,
        email_verified=_is_true(merged.get("email_verified")),
        name=name if isinstance(name, str) and name else None,
    )
