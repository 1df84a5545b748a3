"""core.mailer against a real SMTP server on loopback (aiosmtpd: plain, STARTTLS and implicit TLS), and
the log fallback of the embedded default."""

from __future__ import annotations

import asyncio
import logging
import smtplib
import ssl
from concurrent.futures import ThreadPoolExecutor
from types import SimpleNamespace

import pytest

from core.mailer import MailError, build_message, parse_smtp_url, send_mail, send_mail_async
from tests.fixtures.smtp_server import running_smtp

LINK = "https://flowdesk.example/reset?token=abc.123.def"
CREDS = ("mailer", "p@ss:w/rd with spaces")


def settings(url: str | None, ca_file: object = None, **extra: object) -> SimpleNamespace:
    return SimpleNamespace(SMTP_URL=url, SMTP_CA_FILE=ca_file, ENV="test", **extra)


def test_plain_smtp_delivers_the_message() -> None:
    with running_smtp("plain") as smtp:
        send_mail(
            "Alice <alice@example.com>", "Your invitation", f"Join us: {LINK}\n", settings=settings(smtp.url)
        )
        [got] = smtp.wait_for(1)
    assert got.rcpt_tos == ["alice@example.com"]
    assert got.mail_from == "no-reply@localhost"
    assert got.message["To"] == "Alice <alice@example.com>"
    assert got.message["From"] == "flowdesk <no-reply@localhost>"
    assert got.message["Subject"] == "Your invitation"
    assert got.message["Message-ID"] and got.message["Date"]
    assert got.message.get_content().replace("\r\n", "\n") == f"Join us: {LINK}\n"
    assert got.tls is False


def test_starttls_with_login_and_custom_sender() -> None:
    with running_smtp("starttls", credentials=CREDS) as smtp:
        conf = settings(smtp.url, smtp.ca_file, SMTP_FROM="Acme Support <support@acme.example>")
        send_mail("bob@example.org", "Réinitialisation du mot de passe", "Bonjour Zoë ✓\n", settings=conf)
        [got] = smtp.wait_for(1)
    assert got.tls is True
    assert got.login == "mailer"
    assert got.mail_from == "support@acme.example"
    assert got.message["Subject"] == "Réinitialisation du mot de passe"
    assert got.message.get_content().replace("\r\n", "\n") == "Bonjour Zoë ✓\n"


def test_smtps_with_login() -> None:
    with running_smtp("smtps", credentials=CREDS) as smtp:
        send_mail("carol@example.org", "Reset", LINK, settings=settings(smtp.url, smtp.ca_file))
        [got] = smtp.wait_for(1)
    assert got.tls is True
    assert got.login == "mailer"


def test_tls_certificate_is_verified() -> None:
    # Without trusting the test CA, the self-signed certificate must be refused, nothing sent.
    with running_smtp("starttls", credentials=CREDS) as smtp:
        with pytest.raises(ssl.SSLCertVerificationError):
            send_mail("dave@example.org", "Reset", LINK, settings=settings(smtp.url))
        assert smtp.messages == []


def test_starttls_url_never_falls_back_to_plain_text() -> None:
    with running_smtp("plain") as smtp:
        url = smtp.url.replace("smtp://", "smtp+starttls://mailer:secret@")
        with pytest.raises(smtplib.SMTPNotSupportedError):
            send_mail("erin@example.org", "Reset", LINK, settings=settings(url, smtp.ca_file))
        assert smtp.messages == []


def test_wrong_password_is_refused() -> None:
    with running_smtp("starttls", credentials=CREDS) as smtp:
        url = smtp.url.replace("p%40ss", "nope")
        with pytest.raises(smtplib.SMTPAuthenticationError):
            send_mail("frank@example.org", "Reset", LINK, settings=settings(url, smtp.ca_file))
        assert smtp.messages == []


@pytest.mark.parametrize(
    ("to", "subject"),
    [
        ("alice@example.com", "Hello\r\nBcc: victim@example.net"),
        ("alice@example.com", "Hello\nX-Injected: 1"),
        ("alice@example.com", "Hello\rthere"),
        ("alice@example.com\r\nBcc: victim@example.net", "Hello"),
        ("alice@example.com\nCc: victim@example.net", "Hello"),
        ("alice@example.com, victim@example.net", "Hello"),
        ("alice@example.com)<victim@example.net>", "Hello"),
        ("not-an-address", "Hello"),
        ("", "Hello"),
        ("alice@example.com", ""),
        ("alice@example.com", "x" * 201),
    ],
)
def test_bad_headers_are_refused_and_nothing_is_sent(to: str, subject: str) -> None:
    with running_smtp("plain") as smtp:
        with pytest.raises(MailError):
            send_mail(to, subject, "body", settings=settings(smtp.url))
        assert smtp.messages == []


def test_body_line_breaks_are_fine_and_stay_in_the_body() -> None:
    msg = build_message("alice@example.com", "Hi", "line 1\r\nBcc: not-a-header@example.net\n")
    assert msg["Bcc"] is None
    assert "Bcc: not-a-header@example.net" in msg.get_content()


def test_without_smtp_url_the_message_goes_to_the_log(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="flowdesk.mailer"):
        send_mail("alice@example.com", "Your invitation", f"Join us: {LINK}", settings=settings(None))
    [record] = [r for r in caplog.records if r.name == "flowdesk.mailer"]
    text = record.getMessage()
    assert record.levelno == logging.WARNING
    assert "MAIL NOT SENT" in text and "SMTP_URL is not set" in text
    assert "To: alice@example.com" in text
    assert "Subject: Your invitation" in text
    assert LINK in text


def test_in_prod_the_log_fallback_withholds_the_body(caplog: pytest.LogCaptureFixture) -> None:
    conf = SimpleNamespace(SMTP_URL=None, ENV="prod")
    with caplog.at_level(logging.INFO, logger="flowdesk.mailer"):
        send_mail("alice@example.com", "Reset your password", f"Reset: {LINK}", settings=conf)
    assert "MAIL NOT SENT" in caplog.text
    assert "alice@example.com" in caplog.text
    assert LINK not in caplog.text


def test_log_fallback_still_refuses_header_injection(caplog: pytest.LogCaptureFixture) -> None:
    with pytest.raises(MailError):
        send_mail("alice@example.com", "Hi\nBcc: x@example.net", "body", settings=settings(None))
    assert "MAIL NOT SENT" not in caplog.text


def test_send_mail_async_delivers() -> None:
    with running_smtp("plain") as smtp:
        # In a thread of its own: the e2e tests' session-wide Playwright keeps an event loop running
        # in the main thread, where asyncio.run() would refuse to start.
        with ThreadPoolExecutor(1) as pool:
            coro = send_mail_async("alice@example.com", "Async", "hello", settings=settings(smtp.url))
            pool.submit(asyncio.run, coro).result(timeout=30)
        [got] = smtp.wait_for(1)
    assert got.message["Subject"] == "Async"


def test_parse_smtp_url() -> None:
    target = parse_smtp_url("smtp+starttls://user%40corp:p%40ss%3Aword@mail.example.com")
    assert (target.scheme, target.host, target.port) == ("smtp+starttls", "mail.example.com", 587)
    assert (target.username, target.password) == ("user@corp", "p@ss:word")
    assert "p@ss" not in repr(target)
    assert parse_smtp_url("smtps://mail.example.com").port == 465
    assert parse_smtp_url("smtp://localhost").port == 25
    assert parse_smtp_url("smtp://localhost:2525").username is None
    for bad in ("http://mail.example.com", "smtp://", "mail.example.com:25", "smtp://h:notaport"):
        with pytest.raises(MailError):
            parse_smtp_url(bad)
