"""Encryption of tenant secrets at rest (Fernet; DESIGN.md §6).

The Fernet key is derived from ``FLOWDESK_SECRET_KEY`` with HKDF-SHA256 (info
``b"flowdesk-secrets"``), so the secret key itself never touches a ciphertext and other uses of it
(token signing) get unrelated keys.

Key rotation (MultiFernet): the first key encrypts, every key decrypts. To rotate, set the new
``FLOWDESK_SECRET_KEY`` and keep the old one in ``PREVIOUS_SECRET_KEYS`` (a settings list, read
here if core.settings defines it; or pass ``keys=[new, old]``), then re-encrypt the stored rows
with :func:`rotate` and drop the old key. Plaintext is never logged or put in exception messages.
"""

from __future__ import annotations

import base64
from collections.abc import Sequence
from functools import lru_cache

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from core.settings import get_settings

INFO = b"flowdesk-secrets"


class SecretDecryptError(ValueError):
    """A ciphertext that none of the configured keys opens (tampered, or the key changed)."""


def derive_key(secret_key: str) -> bytes:
    """The urlsafe-base64 Fernet key for one ``SECRET_KEY``."""
    raw = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=INFO).derive(secret_key.encode())
    return base64.urlsafe_b64encode(raw)


@lru_cache(maxsize=8)
def _cipher(keys: tuple[str, ...]) -> MultiFernet:
    if not keys or not all(keys):
        raise ValueError("no secret key configured")
    return MultiFernet([Fernet(derive_key(k)) for k in keys])


def configured_keys() -> tuple[str, ...]:
    """``SECRET_KEY`` first, then any previous keys (still accepted for decryption)."""
    s = get_settings()
    previous = getattr(s, "PREVIOUS_SECRET_KEYS", None) or ()
    return (
        s.SECRET_KEY.get_secret_value(),
        *(k.get_secret_value() if hasattr(k, "get_secret_value") else str(k) for k in previous),
    )


def cipher(keys: Sequence[str] | None = None) -> MultiFernet:
    return _cipher(tuple(keys) if keys is not None else configured_keys())


def encrypt(text: str, *, keys: Sequence[str] | None = None) -> str:
    if not isinstance(text, str):
        raise TypeError("encrypt() takes str")
    return cipher(keys).encrypt(text.encode("utf-8")).decode("ascii")


def decrypt(token: str, *, keys: Sequence[str] | None = None) -> str:
    try:
        return cipher(keys).decrypt(token.encode("ascii")).decode("utf-8")
    except (InvalidToken, UnicodeError):
        # `from None`: the token and any partial plaintext stay out of tracebacks.
        raise SecretDecryptError("secret cannot be decrypted with the configured keys") from None


def rotate(token: str, *, keys: Sequence[str] | None = None) -> str:
    """Re-encrypt ``token`` under the first key (it must open under one of ``keys``)."""
    try:
        return cipher(keys).rotate(token.encode("ascii")).decode("ascii")
    except (InvalidToken, UnicodeError):
        raise SecretDecryptError("secret cannot be decrypted with the configured keys") from None
