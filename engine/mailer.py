"""The SMTP sender: delivers what the outbox holds, each mail once, retrying with backoff.

Rows are claimed with a conditional UPDATE (`pending` -> `sending`, plus `FOR UPDATE SKIP
LOCKED` on PostgreSQL) and the claim is committed before the server is contacted, so two
senders never deliver one mail twice and no database lock is held while talking SMTP. A claim
is a lease: a sender that dies mid-send leaves the row to be claimed again once the lease ends
(that mail may then arrive twice; it keeps its Message-ID, so mail clients fold the copies).
"""

from __future__ import annotations

import logging
import smtplib
import ssl
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import format_datetime, parseaddr
from typing import Any, cast

from sqlalchemy import CursorResult, Row, and_, select, update

from .business.mail import OutboxMail, is_valid_address
from .db import db, is_postgres

log = logging.getLogger(__name__)

# after the 1st, 2nd, 3rd ... failed attempt; the last delay repeats until MAIL_MAX_ATTEMPTS
RETRY_DELAYS = (
    timedelta(minutes=1),
    timedelta(minutes=5),
    timedelta(minutes=30),
    timedelta(hours=2),
    timedelta(hours=6),
    timedelta(hours=12),
)
DEFAULT_MAX_ATTEMPTS = 8
DEFAULT_TIMEOUT_SECONDS = 10.0
CLAIM_LEASE = timedelta(minutes=10)
CLAIM_BATCH = 10
CLAIMABLE = ("pending", "sending")  # `sending` only once its lease (next_attempt_at) has ended


class InvalidMail(ValueError):
    """The mail cannot be sent as written (bad address, line break in a header)."""


@dataclass
class SendReport:
    sent: int = 0
    retrying: int = 0  # failed this time, another attempt is scheduled
    failed: int = 0  # given up: invalid, or out of attempts
    skipped: str | None = None  # why nothing was tried at all

    @property
    def attempted(self) -> int:
        return self.sent + self.retrying + self.failed


def retry_delay(attempts: int) -> timedelta:
    """How long to wait after the `attempts`-th failed attempt: 1 min, 5 min, 30 min, 2 h, ..."""
    return RETRY_DELAYS[min(max(attempts, 1), len(RETRY_DELAYS)) - 1]


def _flag(value: Any) -> bool:
    if isinstance(value, str):
        return value.strip().lower() in ("1", "true", "yes", "on")
    return bool(value)


@dataclass(frozen=True)
class MailSettings:
    server: str
    port: int
    use_tls: bool  # STARTTLS after connecting
    use_ssl: bool  # TLS from the first byte (SMTPS)
    username: str | None
    password: str | None
    sender: Address
    timeout: float
    max_attempts: int

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> MailSettings | None:
        """The settings from MAIL_* keys; None without MAIL_SERVER. ValueError when inconsistent."""
        server = (config.get("MAIL_SERVER") or "").strip()
        if not server:
            return None
        use_ssl = _flag(config.get("MAIL_USE_SSL"))
        use_tls = _flag(config.get("MAIL_USE_TLS"))
        if use_ssl and use_tls:
            raise ValueError("MAIL_USE_SSL and MAIL_USE_TLS exclude each other")
        username = config.get("MAIL_USERNAME") or None
        return cls(
            server=server,
            port=int(config.get("MAIL_PORT") or (465 if use_ssl else 25)),
            use_tls=use_tls,
            use_ssl=use_ssl,
            username=username,
            password=config.get("MAIL_PASSWORD") or None,
            sender=_sender(config.get("MAIL_DEFAULT_SENDER") or username),
            timeout=float(config.get("MAIL_TIMEOUT") or DEFAULT_TIMEOUT_SECONDS),
            max_attempts=max(1, int(config.get("MAIL_MAX_ATTEMPTS") or DEFAULT_MAX_ATTEMPTS)),
        )


def _sender(value: Any) -> Address:
    """`Name <addr>`, `addr` or (name, addr) as Flask-Mail accepts it."""
    if isinstance(value, tuple | list) and len(value) == 2:
        name, address = str(value[0]), str(value[1])
    else:
        name, address = parseaddr(str(value or ""))
    raw = f"{value}"
    if not is_valid_address(address) or any(c in raw for c in "\r\n\0"):
        raise ValueError(f"MAIL_DEFAULT_SENDER {value!r} is not a valid sender address")
    return Address(display_name=name, addr_spec=address)


def _aware(value: datetime) -> datetime:
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def build_message(mail: Any, sender: Address, now: datetime) -> EmailMessage:
    """The message for one outbox row; InvalidMail if a header could carry another header."""
    if not is_valid_address(mail.to_address or ""):
        raise InvalidMail(f"invalid recipient address {mail.to_address!r}")
    if any(c in mail.subject for c in "\r\n\0"):
        raise InvalidMail("the subject contains a line break")
    created = _aware(mail.created_at).astimezone(UTC)
    message = EmailMessage()
    message["From"] = sender
    message["To"] = mail.to_address
    message["Subject"] = mail.subject
    message["Date"] = format_datetime(_aware(now).astimezone(UTC))
    # stable per outbox row: a copy sent again after a crash is recognisably the same mail
    message["Message-ID"] = f"<outbox.{mail.id}.{created:%Y%m%d%H%M%S}@{sender.domain}>"
    message["Auto-Submitted"] = "auto-generated"  # RFC 3834: no out-of-office replies, please
    message.set_content(mail.body, charset="utf-8", cte="quoted-printable")
    return message


class _Connection:
    """One SMTP session, opened at the first mail and reused for the rest of the run."""

    def __init__(self, settings: MailSettings) -> None:
        self.settings = settings
        self.client: smtplib.SMTP | None = None

    def open(self) -> smtplib.SMTP:
        if self.client is not None:
            return self.client
        s = self.settings
        context = ssl.create_default_context()
        client: smtplib.SMTP
        if s.use_ssl:
            client = smtplib.SMTP_SSL(s.server, s.port, timeout=s.timeout, context=context)
        else:
            client = smtplib.SMTP(s.server, s.port, timeout=s.timeout)
        try:
            if s.use_tls:
                client.starttls(context=context)
            if s.username:
                client.login(s.username, s.password or "")
        except BaseException:
            client.close()
            raise
        self.client = client
        return client

    def close(self) -> None:
        client, self.client = self.client, None
        if client is None:
            return
        try:
            client.quit()
        except (smtplib.SMTPException, OSError):
            client.close()


def _describe(exc: BaseException) -> str:
    if isinstance(exc, smtplib.SMTPRecipientsRefused):
        return "; ".join(
            f"{address}: {code} {_text(reply)}" for address, (code, reply) in exc.recipients.items()
        )
    if isinstance(exc, smtplib.SMTPResponseException):
        return f"{exc.smtp_code} {_text(exc.smtp_error)}"
    return f"{type(exc).__name__}: {exc}"


def _text(reply: bytes | str) -> str:
    return reply.decode("utf-8", "replace") if isinstance(reply, bytes) else str(reply)


def send_pending(now: datetime, config: Mapping[str, Any], *, limit: int = 50) -> SendReport:
    """Send up to `limit` outbox mails due at `now`; each is marked sent, or scheduled again
    with backoff, or failed after MAIL_MAX_ATTEMPTS (its last error kept).

    Runs its own transactions (claim, then one commit per mail): call it outside any unit of
    work, as the scheduler tick does. Without MAIL_SERVER nothing is sent and mail waits."""
    settings = MailSettings.from_config(config)
    if settings is None:
        return SendReport(skipped="MAIL_SERVER is not configured")
    report = _Run(settings, _aware(now).astimezone(UTC)).send(limit)
    if report.attempted:
        log.info("mail: %s sent, %s to retry, %s failed", report.sent, report.retrying, report.failed)
    return report


class _Run:
    """One call of send_pending: claims batch after batch on one SMTP connection."""

    def __init__(self, settings: MailSettings, now: datetime) -> None:
        self.settings = settings
        self.now = now
        self.report = SendReport()
        self.connection = _Connection(settings)

    def send(self, limit: int) -> SendReport:
        try:
            while self.report.attempted < limit:
                claimed = _claim(self.now, min(CLAIM_BATCH, limit - self.report.attempted))
                if not claimed or not self.deliver(claimed):
                    break  # nothing due, or the server is unreachable and the rest must wait
        finally:
            self.connection.close()
        return self.report

    def deliver(self, claimed: list[Row[Any]]) -> bool:
        """Send the claimed mails; False when the connection failed (the rest then wait)."""
        sender = self.settings.sender
        for index, mail in enumerate(claimed):
            try:
                message = build_message(mail, sender, self.now)
            except InvalidMail as exc:
                log.error("outbox mail %s cannot be sent: %s", mail.id, exc)
                _finish(mail, self.now, status="failed", error=str(exc))
                self.report.failed += 1
                continue
            try:
                client = self.connection.open()
            except (smtplib.SMTPException, OSError) as exc:  # refused, timed out, TLS or login failed
                return self.connection_failed(claimed[index:], exc)
            try:
                client.send_message(message, from_addr=sender.addr_spec, to_addrs=[mail.to_address])
            except (smtplib.SMTPRecipientsRefused, smtplib.SMTPResponseException) as exc:
                self.retry_later(mail, _describe(exc))  # the server answered: not this mail, not now
            except (smtplib.SMTPException, OSError) as exc:  # disconnected, timed out
                return self.connection_failed(claimed[index:], exc)
            else:
                if not _finish(mail, self.now, status="sent"):
                    log.warning("outbox mail %s was sent after its claim had expired", mail.id)
                self.report.sent += 1
        return True

    def connection_failed(self, rest: list[Row[Any]], exc: BaseException) -> bool:
        error = _describe(exc)
        log.warning("mail server %s:%s: %s", self.settings.server, self.settings.port, error)
        self.connection.close()
        for mail in rest:
            self.retry_later(mail, error)
        return False

    def retry_later(self, mail: Row[Any], error: str) -> None:
        if mail.attempts >= self.settings.max_attempts:
            log.error("outbox mail %s to %s failed for good: %s", mail.id, mail.to_address, error)
            _finish(mail, self.now, status="failed", error=error)
            self.report.failed += 1
        else:
            retry_at = self.now + retry_delay(mail.attempts)
            _finish(mail, self.now, status="pending", error=error, retry_at=retry_at)
            self.report.retrying += 1


def _claim(now: datetime, batch: int) -> list[Row[Any]]:
    """Take up to `batch` due mails for this sender: `sending`, leased until now + CLAIM_LEASE."""
    session = db.session
    due = and_(OutboxMail.status.in_(CLAIMABLE), OutboxMail.next_attempt_at <= now)
    candidates = (
        select(OutboxMail.id).where(due).order_by(OutboxMail.next_attempt_at, OutboxMail.id).limit(batch)
    )
    if is_postgres():
        candidates = candidates.with_for_update(skip_locked=True)
    result = session.execute(
        update(OutboxMail)
        .where(OutboxMail.id.in_(candidates.scalar_subquery()), due)
        .values(status="sending", attempts=OutboxMail.attempts + 1, next_attempt_at=now + CLAIM_LEASE)
        .returning(
            OutboxMail.id,
            OutboxMail.attempts,
            OutboxMail.to_address,
            OutboxMail.subject,
            OutboxMail.body,
            OutboxMail.created_at,
        )
        .execution_options(synchronize_session=False)
    )
    claimed = sorted(result.all(), key=lambda row: row.id)
    session.commit()
    return claimed


def _finish(
    mail: Row[Any], now: datetime, *, status: str, error: str | None = None, retry_at: datetime | None = None
) -> bool:
    """Record the outcome of this sender's attempt; False if its claim was taken over meanwhile."""
    values: dict[str, Any] = {"status": status, "last_error": error}
    if status == "sent":
        values["sent_at"] = now
    if retry_at is not None:
        values["next_attempt_at"] = retry_at
    claim_held = and_(
        OutboxMail.id == mail.id, OutboxMail.status == "sending", OutboxMail.attempts == mail.attempts
    )
    statement = update(OutboxMail).where(claim_held).values(**values)
    result = cast(
        CursorResult[Any], db.session.execute(statement.execution_options(synchronize_session=False))
    )
    db.session.commit()
    return bool(result.rowcount)
