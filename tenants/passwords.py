"""Password hashing (argon2id), the password policy and the login lockout policy.

Pure functions apart from the CPU cost of argon2: no database, no clock reads (callers pass ``now``).
A hash or verify costs ~150 ms of CPU on purpose; async callers run them in a worker thread
(``anyio.to_thread.run_sync``) so the event loop keeps serving other requests.

Passwords are NFKC-normalised before hashing and before the policy counts characters, so the same
password typed on two keyboards (composed vs decomposed accents) hashes the same.
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import lru_cache

from argon2 import PasswordHasher, Type
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

MIN_LENGTH = 10
MAX_LENGTH = 256

#: RFC 9106's second recommended profile (argon2id, t=3, m=64 MiB, p=4), spelled out so a library
#: upgrade that changes its defaults cannot silently weaken (or rehash) every stored password.
HASHER = PasswordHasher(
    time_cost=3,
    memory_cost=64 * 1024,
    parallelism=4,
    hash_len=32,
    salt_len=16,
    encoding="utf-8",
    type=Type.ID,
)

# The most common leaked passwords that are long enough to pass the length rule (shorter ones already
# fail it). Compared case-insensitively. A small built-in list: no download, no network at sign-up.
COMMON_PASSWORDS: frozenset[str] = frozenset(
    {
        "1234567890",
        "12345678910",
        "123456789a",
        "a123456789",
        "0123456789",
        "0987654321",
        "1234567891",
        "123456789012",
        "1234512345",
        "1122334455",
        "1q2w3e4r5t",
        "1q2w3e4r5t6y",
        "q1w2e3r4t5",
        "q1w2e3r4t5y6",
        "1qaz2wsx3edc",
        "zaq12wsxcde3",
        "qwertyuiop",
        "qwertyuiop123",
        "qwerty1234",
        "qwerty12345",
        "qwerty123456",
        "asdfghjkl1",
        "asdfghjkl;",
        "zxcvbnm123",
        "abcdefghij",
        "abcdefg123",
        "abcd123456",
        "abc1234567",
        "password12",
        "password123",
        "password1234",
        "password12345",
        "password!1",
        "passw0rd123",
        "p@ssw0rd123",
        "p@ssword123",
        "mypassword",
        "mypassword1",
        "iloveyou12",
        "iloveyou123",
        "welcome123",
        "welcome1234",
        "letmein123",
        "changeme123",
        "changeme12",
        "administrator",
        "admin12345",
        "admin123456",
        "adminadmin",
        "rootroot12",
        "football123",
        "baseball123",
        "basketball",
        "princess123",
        "sunshine123",
        "superman123",
        "starwars123",
        "monkey12345",
        "dragon12345",
        "trustno1234",
        "whatever123",
        "chocolate1",
        "computer123",
        "internet123",
        "michael123",
        "jennifer123",
        "charlie123",
        "liverpool1",
        "manchester",
        "cheesecake",
        "butterfly1",
        "pokemon123",
        "minecraft1",
        "minecraft123",
        "flowdesk123",
        "flowdesk1234",
        "helloworld",
        "helloworld1",
        "hello12345",
        "secret1234",
        "letmeinplease",
        "thisismypassword",
        "correcthorsebatterystaple",
    }
)


class PasswordPolicyError(ValueError):
    """A new password breaks the policy; ``messages`` are user-facing, one per broken rule."""

    def __init__(self, messages: list[str]) -> None:
        self.messages = messages
        super().__init__(" ".join(messages))


def _normalise(password: str) -> str:
    return unicodedata.normalize("NFKC", password)


def password_problems(password: str, *, email: str | None = None) -> list[str]:
    """Every rule the password breaks, as clear messages; an empty list means it is acceptable."""
    pw = _normalise(password)
    problems: list[str] = []
    if len(pw) < MIN_LENGTH:
        problems.append(f"Use at least {MIN_LENGTH} characters (this one has {len(pw)}).")
    if len(pw) > MAX_LENGTH:
        problems.append(f"Use at most {MAX_LENGTH} characters (this one has {len(pw)}).")
    if pw and len(set(pw)) == 1:
        problems.append("Don't repeat a single character: mix several different characters.")
    folded = pw.strip().casefold()
    if folded in COMMON_PASSWORDS:
        problems.append("This is one of the most common passwords; choose one that is harder to guess.")
    if email and folded in {email.strip().casefold(), email.split("@", 1)[0].strip().casefold()}:
        problems.append("Don't use your email address as your password.")
    return problems


def check_password_policy(password: str, *, email: str | None = None) -> None:
    """Raise :class:`PasswordPolicyError` listing every broken rule (use before hashing a new password)."""
    problems = password_problems(password, email=email)
    if problems:
        raise PasswordPolicyError(problems)


def hash_password(password: str) -> str:
    """An argon2id hash (PHC string with its own salt and parameters) of ``password``."""
    if len(password) > 4 * MAX_LENGTH:
        # Bound the work an attacker can ask for; the policy already refuses anything this long.
        raise PasswordPolicyError([f"Use at most {MAX_LENGTH} characters."])
    return HASHER.hash(_normalise(password))


def verify_password(password_hash: str, password: str) -> tuple[bool, bool]:
    """``(ok, needs_rehash)``: whether ``password`` matches, and whether the stored hash should be
    replaced by ``hash_password(password)`` because it uses older parameters (only when ``ok``).

    The comparison is argon2's own constant-time one. A malformed stored hash counts as a mismatch.
    """
    if len(password) > 4 * MAX_LENGTH:
        return False, False
    try:
        HASHER.verify(password_hash, _normalise(password))
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False, False
    return True, HASHER.check_needs_rehash(password_hash)


@lru_cache(maxsize=1)
def _dummy_hash() -> str:
    # Same parameters as real hashes, so a miss costs the same time as a wrong password.
    return HASHER.hash("flowdesk-dummy-password-for-unknown-users")


def verify_dummy(password: str) -> tuple[bool, bool]:
    """Spend the same work as :func:`verify_password` and fail: for logins with an unknown email, so
    the response time does not reveal whether an account exists. Always ``(False, False)``."""
    verify_password(_dummy_hash(), password)
    return False, False


def verify_password_or_dummy(password_hash: str | None, password: str) -> tuple[bool, bool]:
    """:func:`verify_password` when the user exists (``password_hash`` set), else :func:`verify_dummy`."""
    if password_hash is None:
        return verify_dummy(password)
    return verify_password(password_hash, password)


def _utc(moment: datetime) -> datetime:
    # SQLite hands back naive datetimes; the project stores UTC everywhere.
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment


@dataclass(frozen=True)
class LockoutPolicy:
    """Lock an account for ``lock_minutes`` after ``max_failures`` consecutive failed logins.

    The counter restarts at 0 when the lock is set, so after the lock expires the user gets
    ``max_failures`` fresh attempts. While locked, callers must not verify the password at all (and not
    count further failures); a successful login resets the counter (:meth:`after_success`).
    """

    max_failures: int = 5
    lock_minutes: int = 15

    def __post_init__(self) -> None:
        if self.max_failures < 1 or self.lock_minutes < 1:
            raise ValueError("max_failures and lock_minutes must be at least 1")

    def after_failure(self, failed_logins: int, now: datetime) -> tuple[int, datetime | None]:
        """New ``(failed_logins, locked_until)`` after one more failed attempt."""
        failures = max(failed_logins, 0) + 1
        if failures >= self.max_failures:
            return 0, _utc(now) + timedelta(minutes=self.lock_minutes)
        return failures, None

    @staticmethod
    def after_success() -> tuple[int, datetime | None]:
        """New ``(failed_logins, locked_until)`` after a successful login."""
        return 0, None

    @staticmethod
    def is_locked(locked_until: datetime | None, now: datetime) -> bool:
        """Whether the account is still locked at ``now`` (the lock ends exactly at ``locked_until``)."""
        return locked_until is not None and _utc(now) < _utc(locked_until)
