"""Fernet encryption of tenant secrets (core/crypto.py)."""

from __future__ import annotations

import base64
import logging

import pytest
from cryptography.fernet import Fernet
from pydantic import SecretStr

from core import crypto
from core.settings import get_settings

OLD, NEW = "old-secret-key-0123456789", "new-secret-key-9876543210"


@pytest.fixture
def secret_key(monkeypatch):
    monkeypatch.setenv("FLOWDESK_SECRET_KEY", NEW)
    get_settings.cache_clear()
    yield NEW
    get_settings.cache_clear()


def test_round_trip_with_the_configured_key(secret_key):
    for text in ["sk-live-123", "", "ünïcødé ✓ 秘密", "x" * 10_000]:
        token = crypto.encrypt(text)
        assert not text or text not in token
        assert crypto.decrypt(token) == text
    # Fernet has a random IV: the same plaintext never gives the same ciphertext.
    assert crypto.encrypt("same") != crypto.encrypt("same")


def test_key_is_hkdf_derived_not_the_raw_secret(secret_key):
    key = crypto.derive_key(NEW)
    assert key == crypto.derive_key(NEW) and key != crypto.derive_key(OLD)
    assert len(base64.urlsafe_b64decode(key)) == 32
    assert NEW.encode() not in base64.urlsafe_b64decode(key)
    # Interoperates with plain Fernet under the derived key.
    assert Fernet(key).decrypt(crypto.encrypt("hello").encode()) == b"hello"


def test_wrong_key_or_tampered_token_is_refused_without_leaking(secret_key):
    token = crypto.encrypt("sk-very-secret", keys=[OLD])
    with pytest.raises(crypto.SecretDecryptError) as info:
        crypto.decrypt(token)
    assert "sk-very-secret" not in str(info.value) and token not in str(info.value)
    assert info.value.__cause__ is None and info.value.__suppress_context__
    good = crypto.encrypt("sk-very-secret")
    tampered = good[:-6] + ("A" if good[-6] != "A" else "B") + good[-5:]
    for bad in [tampered, "not a token", "ünïcødé", ""]:
        with pytest.raises(crypto.SecretDecryptError):
            crypto.decrypt(bad)


def test_rotation_with_multifernet(secret_key):
    old_token = crypto.encrypt("sk-rotate-me", keys=[OLD])
    # During rotation both keys are configured: old ciphertexts still open ...
    assert crypto.decrypt(old_token, keys=[NEW, OLD]) == "sk-rotate-me"
    # ... and are re-encrypted under the first key; then the old key can go.
    rotated = crypto.rotate(old_token, keys=[NEW, OLD])
    assert crypto.decrypt(rotated, keys=[NEW]) == "sk-rotate-me"
    assert crypto.decrypt(rotated) == "sk-rotate-me"  # NEW is the configured SECRET_KEY
    with pytest.raises(crypto.SecretDecryptError):
        crypto.decrypt(rotated, keys=[OLD])
    with pytest.raises(crypto.SecretDecryptError):
        crypto.rotate(old_token, keys=[NEW])


def test_previous_keys_from_settings_are_accepted_for_decryption(secret_key, monkeypatch):
    old_token = crypto.encrypt("sk-prev", keys=[OLD])
    monkeypatch.setattr(get_settings(), "PREVIOUS_SECRET_KEYS", [SecretStr(OLD)])
    assert crypto.configured_keys() == (NEW, OLD)
    assert crypto.decrypt(old_token) == "sk-prev"


def test_no_key_means_no_cipher():
    with pytest.raises(ValueError, match="no secret key"):
        crypto.encrypt("x", keys=[])
    with pytest.raises(ValueError, match="no secret key"):
        crypto.encrypt("x", keys=[""])


def test_nothing_is_logged(secret_key, caplog):
    caplog.set_level(logging.DEBUG)
    token = crypto.encrypt("sk-never-logged")
    crypto.decrypt(token)
    with pytest.raises(crypto.SecretDecryptError):
        crypto.decrypt(token, keys=[OLD])
    assert "sk-never-logged" not in caplog.text


def test_only_text_is_encrypted(secret_key):
    with pytest.raises(TypeError):
        crypto.encrypt(b"bytes")  # type: ignore[arg-type]
