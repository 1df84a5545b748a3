"""Outgoing mail: SMTP when ``SMTP_URL`` is set, otherwise the log (the embedded default).

``SMTP_URL`` forms (user and password are optional and percent-decoded):

* ``smtp://host:25``                    plain SMTP, for a relay on the same host or network
* ``smtp+starttls://user:pw@host:587``  STARTTLS (refused if the server does not offer it)
* ``smtps://user:pw@host:465``          implicit TLS

TLS verifies the server certificate against the system CAs, or against ``SMTP_CA_FILE`` when set.
The sender is ``SMTP_FROM`` (default ``flowdesk <no-reply@localhost>``).

Without ``SMTP_URL`` the message, body included, is written to the ``flowdesk.mailer`` log so
invitation and password-reset links can be followed on a developer machine. With ``ENV=prod`` the
body is withheld from the log (it carries single-use links) and the line says to configure SMTP.

:func:`send_mail` blocks (smtplib); async code awaits :func:`send_mail_async`, which runs it in a thread.
"""

from __future__ import annotations

import asyncio
import logging
import smtplib
import ssl
from dataclasses import dataclass
from email import policy
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from typing import Any
from urllib.parse import unquote, urlsplit

from core.settings import get_settings

log = logging.getLogger("flowdesk.mailer")

DEFAULT_FROM = "flowdesk <no-reply@localhost>"
DEFAULT_PORTS = {"smtp": 25, "smtp+starttls": 587, "smtps": 465}
TIMEOUT_S = 10.0
MAX_SUBJECT = 200
MAX_BODY = 100_000


class MailError(ValueError):
    """The message or the mail configuration is invalid (nothing was sent)."""


@dataclass(frozen=True)
class SmtpTarget:
    scheme: str
    host: str
    port: int
    username: str | None
    password: str | None

    def __repr__(self) -> str:  # never print the password
        return f"SmtpTarget({self.scheme}://{self.host}:{self.port}, user={self.username!r})"


def parse_smtp_url(url: str) -> SmtpTarget:
    """Split an ``SMTP_URL`` into its parts; raises :class:`MailError` on an unknown scheme or no host."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in DEFAULT_PORTS:
        raise MailError(f"SMTP_URL scheme must be one of {', '.join(DEFAULT_PORTS)}, not {scheme!r}")
    if not parts.hostname:
        raise MailError("SMTP_URL has no host")
    try:
        port = parts.port or DEFAULT_PORTS[scheme]
    except ValueError as e:
        raise MailError("SMTP_URL has an invalid port") from e
    return SmtpTarget(
        scheme=scheme,
        host=parts.hostname,
        port=port,
        username=unquote(parts.username) if parts.username else None,
        password=unquote(parts.password) if parts.password is not None else None,
    )


def _no_newlines(name: str, value: str) -> None:
    # Header injection: a CR or LF in a header value would start a new header (Bcc: ...) or the body.
    if any(c in value for c in "\r\n\x00"):
        raise MailError(f"{name} must not contain line breaks")


def _address(name: str, value: str) -> Address:
    """Exactly one address, parsed by the modern email parser; any parse defect is refused (the old
    ``parseaddr`` reads ``a@x)<b@y>`` ambiguously)."""
    _no_newlines(name, value)
    if len(value) > 320:
        raise MailError(f"{name} is too long")
    header = policy.default.header_factory("To", value)  # an address-list header parser
    addresses = header.addresses
    if len(addresses) != 1 or header.defects:
        raise MailError(f"{name} is not a single valid email address: {value!r}")
    address = addresses[0]
    if not address.username or ("." not in address.domain and address.domain != "localhost"):
        raise MailError(f"{name} is not a valid email address: {value!r}")
    return address


def build_message(to: str, subject: str, text: str, *, sender: str = DEFAULT_FROM) -> EmailMessage:
    """A plain-text message with validated headers; raises :class:`MailError` on injection attempts."""
    if not isinstance(to, str) or not isinstance(subject, str) or not isinstance(text, str):
        raise MailError("to, subject and text must be strings")
    _no_newlines("subject", subject)
    if not subject.strip() or len(subject) > MAX_SUBJECT:
        raise MailError(f"subject must be 1 to {MAX_SUBJECT} characters")
    if len(text) > MAX_BODY:
        raise MailError(f"text must be at most {MAX_BODY} characters")
    from_addr = _address("SMTP_FROM", sender)
    msg = EmailMessage()
    msg["From"] = from_addr
    msg["To"] = _address("to", to)
    msg["Subject"] = subject
    msg["Date"] = formatdate(localtime=False, usegmt=True)
    msg["Message-ID"] = make_msgid(domain=from_addr.domain or "localhost")
    msg.set_content(text)
    return msg


def _tls_context(settings: Any) -> ssl.SSLContext:
    ca_file = getattr(settings, "SMTP_CA_FILE", None)
    return ssl.create_default_context(cafile=str(ca_file) if ca_file else None)


def _deliver(msg: EmailMessage, target: SmtpTarget, settings: Any) -> None:
    timeout = float(getattr(settings, "SMTP_TIMEOUT_S", TIMEOUT_S))
    smtp: smtplib.SMTP
    if target.scheme == "smtps":
        smtp = smtplib.SMTP_SSL(target.host, target.port, timeout=timeout, context=_tls_context(settings))
    else:
        smtp = smtplib.SMTP(target.host, target.port, timeout=timeout)
    with smtp:
        smtp.ehlo()
        if target.scheme == "smtp+starttls":
            # starttls() raises SMTPNotSupportedError when the server does not offer it: never
            # fall back to sending the credentials in clear.
            smtp.starttls(context=_tls_context(settings))
            smtp.ehlo()
        if target.username:
            smtp.login(target.username, target.password or "")
        smtp.send_message(msg)


def send_mail(to: str, subject: str, text: str, *, settings: Any = None) -> None:
    """Send a plain-text mail to one recipient (or log it when ``SMTP_URL`` is unset).

    Raises :class:`MailError` for invalid input or configuration, ``smtplib.SMTPException`` or
    ``OSError`` when the server refuses or cannot be reached.
    """
    settings = settings or get_settings()
    sender = getattr(settings, "SMTP_FROM", None) or DEFAULT_FROM
    msg = build_message(to, subject, text, sender=sender)
    url = getattr(settings, "SMTP_URL", None)
    url = url.get_secret_value() if hasattr(url, "get_secret_value") else url
    if url:
        target = parse_smtp_url(url)
        _deliver(msg, target, settings)
        log.info(
            "mail sent to %s via %s:%s: %s",
            msg["To"].addresses[0].addr_spec,
            target.host,
            target.port,
            subject,
        )
        return
    if getattr(settings, "ENV", "dev") == "prod":
        log.warning(
            "MAIL NOT SENT (SMTP_URL is not set): to=%s subject=%r; body withheld in prod because it "
            "may carry single-use links. Set SMTP_URL to deliver mail.",
            msg["To"].addresses[0].addr_spec,
            subject,
        )
        return
    log.warning(
        "MAIL NOT SENT, PRINTED HERE INSTEAD (SMTP_URL is not set; embedded default). "
        "Any invitation or password-reset link below is live.\nTo: %s\nSubject: %s\n\n%s",
        msg["To"].addresses[0].addr_spec,
        subject,
        text,
    )


async def send_mail_async(to: str, subject: str, text: str, *, settings: Any = None) -> None:
    """:func:`send_mail` in a worker thread, so an async request handler does not block its loop."""
    await asyncio.to_thread(send_mail, to, subject, text, settings=settings)
