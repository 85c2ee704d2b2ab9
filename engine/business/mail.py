"""Outgoing mail: written to the outbox in the transaction of the step that causes it, sent
later by the SMTP sender. With no server configured, mail stays in the outbox."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import DateTime, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from ..db import db
from .common import Model


class OutboxMail(Model):
    __tablename__ = "outbox_mail"
    __table_args__ = (Index("ix_outbox_pending", "status", "next_attempt_at"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    to_address: Mapped[str] = mapped_column(String(300))
    subject: Mapped[str] = mapped_column(String(300))
    body: Mapped[str] = mapped_column(Text)
    kind: Mapped[str] = mapped_column(String(40), default="notice")
    dedupe_key: Mapped[str | None] = mapped_column(String(200), unique=True)
    status: Mapped[str] = mapped_column(String(20), default="pending")  # pending, sent, failed
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    next_attempt_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    sent_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    instance_id: Mapped[int | None] = mapped_column(Integer)


def queue_mail(
    to: str,
    subject: str,
    body: str,
    *,
    now: datetime,
    kind: str = "notice",
    dedupe_key: str | None = None,
    instance_id: int | None = None,
) -> OutboxMail:
    """Put one message in the outbox (in the caller's transaction)."""
    mail = OutboxMail(
        to_address=to,
        subject=subject[:300],
        body=body,
        kind=kind,
        dedupe_key=dedupe_key,
        status="pending",
        attempts=0,
        created_at=now,
        next_attempt_at=now,
        instance_id=instance_id,
    )
    db.session.add(mail)
    return mail
