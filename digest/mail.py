"""The email brief: a rendered brief -> an RFC 5322 message -> SMTP, exactly once per subscriber and day.

Transport is the standard library (smtplib, email.message.EmailMessage). The SMTP conversation
is split at the point of no return: connect, STARTTLS, AUTH, MAIL FROM and RCPT TO happen while
the delivery is merely `claimed`; the row is marked `sending` right before DATA (see
digest.delivery for why and for what a crash at each point means). Errors are classified:
connection failures and 4xx replies are transient (the delivery stays retryable), 5xx replies
are permanent (the delivery is failed with the server's reason).
"""

from __future__ import annotations

import email.policy
import smtplib
import socket
import ssl
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from email.message import EmailMessage
from email.utils import format_datetime, formataddr, parseaddr
from pathlib import Path

from sqlalchemy.orm import Session, sessionmaker

from digest.delivery import (
    DeliveryOutcome,
    PermanentDeliveryError,
    TransientDeliveryError,
    deliver_once,
    idempotency_key,
)
from digest.render import RenderedBrief, render_brief
from digest.summary.schema import DailyBrief, from_dict
from store.models import Brief, Subscriber
from store.settings import Settings


# On the wire: headers are not folded below 998 characters (RFC 5322's hard limit). The default
# 78 would turn a List-Unsubscribe whose <mailto:...> is longer than one line into RFC 2047
# encoded-words, which RFC 2369 headers must not contain (clients then show no unsubscribe button).
WIRE = email.policy.SMTP.clone(max_line_length=998)


@dataclass(frozen=True)
class SmtpConfig:
    host: str
    port: int
    security: str  # none | starttls | ssl
    user: str | None
    password: str | None
    timeout: float
    from_addr: str  # "Name <address>"
    ca_file: str | None = None  # verify the server against this CA bundle instead of the system's

    @classmethod
    def from_settings(cls, settings: Settings) -> SmtpConfig:
        password = settings.smtp_password.get_secret_value() if settings.smtp_password else None
        return cls(settings.smtp_host, settings.smtp_port, settings.smtp_security, settings.smtp_user, password,
                   settings.smtp_timeout, settings.smtp_from,
                   str(settings.smtp_ca_file) if settings.smtp_ca_file else None)

    def tls_context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=self.ca_file)  # hostname and chain verified


# --- the message -------------------------------------------------------------------------------


class MailConfigError(ValueError):
    """A mail setting that cannot work; the message names the setting."""


def sender_address(from_addr: str) -> str:
    address = parseaddr(from_addr)[1]
    if address.count("@") != 1 or not all(address.split("@")):
        raise MailConfigError(f"BRIEFCAST_SMTP_FROM {from_addr!r} has no usable email address, "
                              "e.g. 'briefcast <brief@example.org>'")
    return address


def message_id_for(key: str, from_addr: str) -> str:
    """Deterministic from the idempotency key: a re-send after a crash carries the same Message-ID."""
    return f"<brief.{key[:40]}@{sender_address(from_addr).rsplit('@', 1)[1]}>"


@dataclass(frozen=True)
class UnsubscribeLinks:
    https: str
    mailto: str

    @property
    def header(self) -> str:
        return f"<{self.mailto}>, <{self.https}>"


def unsubscribe_links(settings: Settings, token: str) -> UnsubscribeLinks:
    quoted = urllib.parse.quote(token, safe="")
    mailbox = settings.unsubscribe_mailto or sender_address(settings.smtp_from)
    return UnsubscribeLinks(https=f"{settings.public_base_url.rstrip('/')}/unsubscribe/{quoted}",
                            mailto=f"mailto:{mailbox}?subject={urllib.parse.quote('unsubscribe ' + token)}")


def build_message(rendered: RenderedBrief, *, to_addr: str, to_name: str | None, from_addr: str, message_id: str,
                  unsubscribe: UnsubscribeLinks, list_id: str, date: datetime | None = None) -> EmailMessage:
    """multipart/alternative (text, then HTML) with the list headers mail clients offer as a button."""
    message = EmailMessage(policy=email.policy.SMTP)
    message["From"] = from_addr
    message["To"] = formataddr((to_name or "", to_addr)) if to_name else to_addr
    message["Subject"] = rendered.subject
    message["Date"] = format_datetime(date or datetime.now(UTC))
    message["Message-ID"] = message_id
    message["List-Id"] = list_id
    message["List-Unsubscribe"] = unsubscribe.header
    message["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"  # RFC 8058: a POST to the https link
    message["Auto-Submitted"] = "auto-generated"
    message.set_content(rendered.text, subtype="plain", charset="utf-8")
    message.add_alternative(rendered.html, subtype="html", charset="utf-8")
    return message


def list_id(topic: str, from_addr: str) -> str:
    return f"<{topic}.briefcast.{sender_address(from_addr).rsplit('@', 1)[1]}>"


# --- the transport -----------------------------------------------------------------------------


class SmtpTransport:
    """One SMTP conversation per message; `before_data` is the commit point (mark `sending`)."""

    def __init__(self, config: SmtpConfig):
        self.config = config

    def send(self, message: EmailMessage, *, before_data: Callable[[], None] = lambda: None) -> str:
        sender = sender_address(message["From"])
        recipient = parseaddr(str(message["To"]))[1]
        payload = message.as_bytes(policy=WIRE)
        started_data = False
        try:
            smtp = self._connect()
            try:
                self._start(smtp)
                self._envelope(smtp, sender, recipient)
                before_data()  # from here on the server may end up with the message
                started_data = True
                code, reply = smtp.data(payload)  # raises on the DATA reply, returns the final one
                if code != 250:
                    raise smtplib.SMTPDataError(code, reply)
            finally:
                _quietly_close(smtp)
        except smtplib.SMTPRecipientsRefused as exc:
            code, reply = next(iter(exc.recipients.values()))
            raise _classify(code, reply, "RCPT TO") from None
        except smtplib.SMTPResponseException as exc:  # sender refused, DATA refused, AUTH, HELO
            raise _classify(exc.smtp_code, exc.smtp_error, "SMTP") from None
        except smtplib.SMTPNotSupportedError as exc:
            raise PermanentDeliveryError(f"{self.config.host}:{self.config.port}: {exc}") from None
        except ssl.SSLCertVerificationError as exc:
            raise PermanentDeliveryError(f"TLS with {self.config.host}:{self.config.port} failed: {exc}") from None
        except (OSError, smtplib.SMTPException) as exc:  # refused, reset, timeout, disconnected
            raise TransientDeliveryError(
                f"SMTP {self.config.host}:{self.config.port}: {type(exc).__name__}: {exc}",
                maybe_delivered=started_data,
            ) from None
        return message["Message-ID"]

    def _connect(self) -> smtplib.SMTP:
        c = self.config
        if c.security == "ssl":
            return smtplib.SMTP_SSL(c.host, c.port, timeout=c.timeout, context=c.tls_context())
        return smtplib.SMTP(c.host, c.port, timeout=c.timeout)

    def _start(self, smtp: smtplib.SMTP) -> None:
        smtp.ehlo_or_helo_if_needed()
        if self.config.security == "starttls":
            smtp.starttls(context=self.config.tls_context())
            smtp.ehlo()
        if self.config.user:
            smtp.login(self.config.user, self.config.password or "")

    @staticmethod
    def _envelope(smtp: smtplib.SMTP, sender: str, recipient: str) -> None:
        code, reply = smtp.mail(sender)
        if code != 250:
            raise smtplib.SMTPSenderRefused(code, reply, sender)
        code, reply = smtp.rcpt(recipient)
        if code not in (250, 251):
            raise smtplib.SMTPRecipientsRefused({recipient: (code, reply)})


def _quietly_close(smtp: smtplib.SMTP) -> None:
    """QUIT after the message is accepted must not turn a delivery into an error."""
    try:
        smtp.quit()
    except (OSError, smtplib.SMTPException):
        smtp.close()


def _classify(code: int, reply: bytes | str, stage: str) -> TransientDeliveryError | PermanentDeliveryError:
    text = reply.decode("utf-8", "replace") if isinstance(reply, bytes) else str(reply)
    reason = f"{stage} refused: {code} {text}".strip()
    return TransientDeliveryError(reason) if 400 <= code < 500 else PermanentDeliveryError(reason)


# --- one subscriber's brief, exactly once --------------------------------------------------------


def worker_name() -> str:
    import os

    return f"{socket.gethostname()}:{os.getpid()}"


def subscriber_message(settings: Settings, brief: DailyBrief, subscriber: Subscriber, *,
                       date: datetime | None = None) -> tuple[RenderedBrief, EmailMessage]:
    """The message one subscriber gets: their persona's cards, their unsubscribe link, the delivery's Message-ID."""
    links = unsubscribe_links(settings, subscriber.unsubscribe_token)
    rendered = render_brief(brief, persona=subscriber.persona, unsubscribe_url=links.https,
                            manage_url=subscriber_page_url(settings, subscriber), web_url=brief_page_url(settings, brief))
    key = idempotency_key("email", subscriber.email, brief.topic, brief.day)
    message = build_message(rendered, to_addr=subscriber.email, to_name=subscriber.name, from_addr=settings.smtp_from,
                            message_id=message_id_for(key, settings.smtp_from), unsubscribe=links,
                            list_id=list_id(brief.topic, settings.smtp_from), date=date)
    return rendered, message


def subscriber_page_url(settings: Settings, subscriber: Subscriber) -> str | None:
    """The signed link to the subscriber's settings page on the web reader (none for a test send)."""
    from digest.manage_links import manage_url

    if subscriber.id is None or not subscriber.manage_secret:
        return None
    return manage_url(settings.public_base_url, subscriber.id, subscriber.manage_secret)


def brief_page_url(settings: Settings, brief: DailyBrief) -> str | None:
    """"View in a browser": only where the reader's pages are public; elsewhere a subscriber, who
    has no API key, would meet the sign-in form."""
    if not settings.web_public:
        return None
    quoted = urllib.parse.quote(brief.topic, safe="")
    return f"{settings.public_base_url.rstrip('/')}/briefs/{quoted}/{brief.day}"


def send_brief_email(settings: Settings, sessions: sessionmaker[Session], *, subscriber_id: int, brief_id: int,
                     worker_id: str | None = None, transport: SmtpTransport | None = None,
                     retry_failed: bool = False) -> DeliveryOutcome | None:
    """Deliver brief `brief_id` to subscriber `subscriber_id` by email, at most once, never lost.

    Returns None when the subscriber or brief is gone or the subscriber is inactive (nothing to
    do); raises TransientDeliveryError when the server is unreachable or answers 4xx (retry).
    """
    with sessions() as session:
        subscriber = session.get(Subscriber, subscriber_id)
        row = session.get(Brief, brief_id)
        if subscriber is None or row is None or not subscriber.active:
            return None
        brief = from_dict(DailyBrief, row.payload)
    _, message = subscriber_message(settings, brief, subscriber)
    transport = transport or SmtpTransport(SmtpConfig.from_settings(settings))
    return deliver_once(
        sessions, channel="email", target=subscriber.email, topic=brief.topic, day=brief.day,
        brief_id=brief_id, subscriber_id=subscriber_id, worker_id=worker_id or worker_name(),
        lease_seconds=settings.delivery_lease_seconds, two_phase=True, retry_failed=retry_failed,
        send=lambda attempt: transport.send(message, before_data=attempt.transmitting),
    )


def send_test_email(settings: Settings, brief: DailyBrief, to_addr: str, *, persona: str | None = None,
                    transport: SmtpTransport | None = None) -> str:
    """The brief sent now to one address as a test; returns its Message-ID.

    No subscriber row and no delivery row: the day's deliveries are untouched, so the real
    subscribers (this address too, if it is one) still get theirs. The message has its own
    Message-ID — a mailbox that drops repeated Message-IDs must not later drop the real brief —,
    "[test]" in the subject, and an unsubscribe link that matches no subscriber."""
    import uuid

    from digest.subscribers import normalise_email

    tester = Subscriber(email=normalise_email(to_addr), name=None, persona=persona, unsubscribe_token="test")
    _, message = subscriber_message(settings, brief, tester)
    domain = sender_address(settings.smtp_from).rsplit("@", 1)[1]
    message.replace_header("Message-ID", f"<brief-test.{uuid.uuid4().hex}@{domain}>")
    message.replace_header("Subject", f"[test] {message['Subject']}")
    return (transport or SmtpTransport(SmtpConfig.from_settings(settings))).send(message)


def email_recipients(sessions: sessionmaker[Session], topic: str) -> list[int]:
    """Ids of the active subscribers of a topic, for a deliver task to fan out over."""
    from digest.subscribers import list_subscribers

    return [s.id for s in list_subscribers(sessions, topic=topic, active_only=True)]


def preview_message(settings: Settings, brief: DailyBrief, *, date: datetime | None = None) -> tuple[RenderedBrief, EmailMessage]:
    """What `briefcast digest` writes: the message as sent, addressed to settings.preview_to."""
    preview = Subscriber(email=settings.preview_to, name=None, persona=None, unsubscribe_token="preview")
    return subscriber_message(settings, brief, preview, date=date)


@dataclass(frozen=True)
class BriefFiles:
    html: Path
    text: Path
    json: Path
    eml: Path


def default_out_dir(settings: Settings, topic: str, day: str) -> Path:
    return settings.data_dir / "briefs" / topic / day


def write_brief_files(settings: Settings, brief: DailyBrief, out_dir: Path | None = None) -> BriefFiles:
    """brief.html, brief.txt, brief.json and brief.eml (the message as sent, to the preview address)."""
    out = out_dir or default_out_dir(settings, brief.topic, brief.day)
    out.mkdir(parents=True, exist_ok=True)
    rendered, message = preview_message(settings, brief)
    files = BriefFiles(out / "brief.html", out / "brief.txt", out / "brief.json", out / "brief.eml")
    _write(files.html, rendered.html.encode("utf-8"))
    _write(files.text, rendered.text.encode("utf-8"))
    _write(files.json, rendered.json.encode("utf-8"))
    _write(files.eml, message.as_bytes(policy=WIRE))
    return files


def _write(path: Path, data: bytes) -> None:
    """Whole or not at all: a reader never opens half a brief."""
    partial = path.with_name(path.name + ".partial")
    partial.write_bytes(data)
    partial.replace(path)

