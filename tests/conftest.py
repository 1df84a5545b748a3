"""Suite-wide rules for tests that need real services (markers declared in pyproject.toml).

``@pytest.mark.pg`` / ``redis`` / ``e2e`` tests check their service before running. When it is
missing they skip with a loud reason on a developer machine, and FAIL when ``CI=true``: a CI run
that silently skipped the database tests would be a green lie.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path
from typing import NoReturn
from urllib.parse import urlsplit

import pytest

CHROMIUM = Path("/usr/bin/chromium")
PG_URL = os.environ.get("TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/test")
REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() in {"1", "true", "yes"}


def unavailable(reason: str) -> NoReturn:
    """Skip (dev) or fail (CI) the current test because a real component is missing."""
    if in_ci():
        pytest.fail(f"CI=true and {reason}", pytrace=False)
    pytest.skip(f"SKIPPED, NOT TESTED: {reason}")


def address(url: str, default_port: int) -> tuple[str, int]:
    parts = urlsplit(url)
    return parts.hostname or "127.0.0.1", parts.port or default_port


def reachable(host: str, port: int, timeout: float = 1.0) -> bool:
    try:
        with socket.create_connection((host, port), timeout):
            return True
    except OSError:
        return False


def pytest_runtest_setup(item: pytest.Item) -> None:
    # Only host:port in messages: a URL may carry a password.
    if item.get_closest_marker("pg") and not reachable(*(pg := address(PG_URL, 5432))):
        unavailable(f"PostgreSQL is not reachable at {pg[0]}:{pg[1]} (set TEST_DATABASE_URL)")
    if item.get_closest_marker("redis") and not reachable(*(rd := address(REDIS_URL, 6379))):
        unavailable(f"Redis is not reachable at {rd[0]}:{rd[1]} (set TEST_REDIS_URL)")
    if item.get_closest_marker("e2e") and not CHROMIUM.exists():
        unavailable(f"{CHROMIUM} is missing (make test installs Debian's chromium)")


@pytest.fixture(autouse=True)
def _close_circuit_breakers():
    """Each test starts with closed circuits: breakers are process-wide (shared through the one
    fakeredis), so failures a test provokes against the demo API must not fail the next test fast."""
    yield
    import sys

    breakers = sys.modules.get("runtime.breakers")
    if breakers is not None:  # never imported: nothing to reset, and no import cost
        breakers.reset_breakers()
