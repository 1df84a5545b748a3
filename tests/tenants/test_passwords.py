"""tenants.passwords: argon2id hashing, the dummy verify, the password policy and the lockout policy."""

from __future__ import annotations

import unicodedata
from datetime import UTC, datetime, timedelta

import pytest
from argon2 import PasswordHasher, Type

from tenants import passwords
from tenants.passwords import (
    MAX_LENGTH,
    MIN_LENGTH,
    LockoutPolicy,
    PasswordPolicyError,
    check_password_policy,
    hash_password,
    password_problems,
    verify_dummy,
    verify_password,
    verify_password_or_dummy,
)

GOOD = "correct-Horse-7-battery"
NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


@pytest.fixture(scope="module")
def stored() -> str:
    return hash_password(GOOD)


# --- hashing --------------------------------------------------------------------------------------


def test_hash_is_argon2id_with_the_explicit_parameters(stored: str) -> None:
    assert stored.startswith("$argon2id$v=19$m=65536,t=3,p=4$")
    assert GOOD not in stored
    assert hash_password(GOOD) != stored  # a fresh salt every time


def test_verify_right_and_wrong_password(stored: str) -> None:
    assert verify_password(stored, GOOD) == (True, False)
    assert verify_password(stored, GOOD + "x") == (False, False)
    assert verify_password(stored, GOOD.upper()) == (False, False)
    assert verify_password(stored, "") == (False, False)


def test_verify_normalises_unicode() -> None:
    composed = unicodedata.normalize("NFC", "mötley-crüe-2024")
    decomposed = unicodedata.normalize("NFD", composed)
    assert composed != decomposed
    assert verify_password(hash_password(composed), decomposed) == (True, False)


def test_malformed_stored_hash_is_a_mismatch_not_a_crash() -> None:
    for bad in (
        "",
        "not-a-hash",
        "$argon2id$v=19$m=65536,t=3,p=4$AAAA$BBBB",
        "$2b$12$abcdefghijklmnopqrstuv",
    ):
        assert verify_password(bad, GOOD) == (False, False)


def test_rehash_flag_for_hashes_with_older_parameters() -> None:
    weaker = PasswordHasher(time_cost=2, memory_cost=19 * 1024, parallelism=1, type=Type.ID).hash(GOOD)
    assert verify_password(weaker, GOOD) == (True, True)
    # A wrong password never asks for a rehash (that would let anyone rewrite the hash).
    assert verify_password(weaker, "wrong-password-1") == (False, False)
    assert verify_password(hash_password(GOOD), GOOD) == (True, False)


def test_oversized_password_is_refused_cheaply(stored: str) -> None:
    huge = "a" * (4 * MAX_LENGTH + 1)
    assert verify_password(stored, huge) == (False, False)
    with pytest.raises(PasswordPolicyError):
        hash_password(huge)


def test_dummy_verify_fails_and_does_the_same_work(monkeypatch: pytest.MonkeyPatch, stored: str) -> None:
    # Prove the unknown-user path runs a real argon2 verify against a hash with the same parameters
    # (wall-clock timing is never asserted; the work done is).
    calls: list[str] = []
    real_verify = passwords.verify_password

    def counting_verify(h: str, p: str) -> tuple[bool, bool]:
        calls.append(h)
        return real_verify(h, p)

    monkeypatch.setattr(passwords, "verify_password", counting_verify)
    assert verify_dummy(GOOD) == (False, False)
    assert verify_password_or_dummy(None, "anything-at-all") == (False, False)
    assert verify_password_or_dummy(stored, GOOD) == (True, False)
    dummy = passwords._dummy_hash()
    assert calls == [dummy, dummy, stored]
    assert dummy.split("$")[:4] == stored.split("$")[:4]  # same algorithm, version and cost
    # Even the dummy's own password is refused on the unknown-user path.
    assert verify_dummy("flowdesk-dummy-password-for-unknown-users") == (False, False)


# --- policy ---------------------------------------------------------------------------------------


def test_good_password_passes() -> None:
    assert password_problems(GOOD) == []
    check_password_policy(GOOD)
    check_password_policy("x" * (MIN_LENGTH - 1) + "y")  # exactly the minimum
    check_password_policy("ab" * (MAX_LENGTH // 2))  # exactly the maximum


@pytest.mark.parametrize(
    ("password", "fragment"),
    [
        ("short1!", f"at least {MIN_LENGTH} characters (this one has 7)"),
        ("", f"at least {MIN_LENGTH} characters"),
        ("ab" * 129, f"at most {MAX_LENGTH} characters (this one has 258)"),
        ("aaaaaaaaaaaa", "single character"),
        ("password123", "most common passwords"),
        ("QwertyUiop", "most common passwords"),
        ("  1234567890  ", "most common passwords"),
    ],
)
def test_policy_messages(password: str, fragment: str) -> None:
    problems = password_problems(password)
    assert any(fragment in p for p in problems), problems
    with pytest.raises(PasswordPolicyError) as info:
        check_password_policy(password)
    assert info.value.messages == problems


def test_policy_lists_every_broken_rule() -> None:
    assert len(password_problems("zzz")) == 2  # too short and one repeated character


def test_email_as_password_is_refused() -> None:
    assert password_problems("jane.doe@example.com", email="Jane.Doe@example.com")
    assert password_problems("jane.doe.smith", email="jane.doe.smith@example.com")
    assert password_problems("jane.doe.smith", email=None) == []


# --- lockout --------------------------------------------------------------------------------------


def test_lockout_locks_on_the_fifth_failure_exactly() -> None:
    policy = LockoutPolicy()
    failures, locked_until = 0, None
    for expected in (1, 2, 3, 4):
        failures, locked_until = policy.after_failure(failures, NOW)
        assert (failures, locked_until) == (expected, None)
        assert not policy.is_locked(locked_until, NOW)
    failures, locked_until = policy.after_failure(failures, NOW)
    assert (failures, locked_until) == (0, NOW + timedelta(minutes=15))
    assert policy.is_locked(locked_until, NOW)


def test_lock_ends_exactly_at_locked_until() -> None:
    policy = LockoutPolicy(max_failures=5, lock_minutes=15)
    until = NOW + timedelta(minutes=15)
    assert policy.is_locked(until, until - timedelta(microseconds=1))
    assert not policy.is_locked(until, until)
    assert not policy.is_locked(until, until + timedelta(seconds=1))
    assert not policy.is_locked(None, NOW)


def test_after_the_lock_the_user_gets_fresh_attempts_and_success_resets() -> None:
    policy = LockoutPolicy(max_failures=3, lock_minutes=1)
    assert policy.after_failure(2, NOW) == (0, NOW + timedelta(minutes=1))
    assert policy.after_failure(0, NOW + timedelta(minutes=2)) == (1, None)
    assert policy.after_success() == (0, None)


def test_lockout_accepts_naive_utc_datetimes_from_sqlite() -> None:
    policy = LockoutPolicy()
    naive_now = NOW.replace(tzinfo=None)
    _, until = policy.after_failure(4, naive_now)
    assert until == NOW + timedelta(minutes=15)
    assert policy.is_locked(until.replace(tzinfo=None), naive_now)


def test_lockout_policy_rejects_nonsense() -> None:
    with pytest.raises(ValueError):
        LockoutPolicy(max_failures=0)
    with pytest.raises(ValueError):
        LockoutPolicy(lock_minutes=0)
