"""Outgoing mail: written to the outbox in the transaction of the step that causes it, sent
later by the SMTP sender (`engine.mailer`). With no server configured, mail stays in the outbox.

Three kinds of notice are written here: "a task is waiting for you" (a task listener, in the
transaction that creates the task), "this task is overdue" (`notify_overdue_tasks`, from the
scheduler tick) and the `send_email` operation service tasks call. Every one carries a dedupe
key, so a retried step or a repeated tick never queues the same notice twice.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from string import Template
from typing import Any, cast
from urllib.parse import quote

from sqlalchemy import DateTime, Index, Integer, String, Table, Text, bindparam, insert, literal, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Mapped, mapped_column

from ..db import db
from ..errors import FieldError, InvalidData
from ..models import HumanTask, User, UserRole
from ..operations import OperationContext, operation
from .common import Model

log = logging.getLogger(__name__)

DEFAULT_BASE_URL = "http://127.0.0.1:5000"
OPEN_TASK = ("open", "claimed")
KEY_LENGTH = 200  # OutboxMail.dedupe_key


class OutboxMail(Model):
    __tablename__ = "outbox_mail"
    __table_args__ = (Index("ix_outbox_pending", "status", "next_attempt_at"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    to_address: Mapped[str] = mapped_column(String(300))
    subject: Mapped[str] = mapped_column(String(300))
    body: Mapped[str] = mapped_column(Text)
    kind: Mapped[str] = mapped_column(String(40), default="notice")
    dedupe_key: Mapped[str | None] = mapped_column(String(200), unique=True)
    # pending -> sending (claimed by a sender until next_attempt_at) -> sent | pending (retry) | failed
    status: Mapped[str] = mapped_column(String(20), default="pending")
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
    """Put one message in the outbox (in the caller's transaction).

    With a `dedupe_key` already in the outbox (or staged in this session) the mail queued
    first is returned and nothing is added: a retried step queues its letter once."""
    key = fit_key(dedupe_key) if dedupe_key else None
    if key is not None:
        existing = db.session.scalar(select(OutboxMail).where(OutboxMail.dedupe_key == key))
        if existing is not None:
            return existing
    mail = OutboxMail(**_mail_values(to, subject, body, now=now, kind=kind, key=key, instance_id=instance_id))
    db.session.add(mail)
    return mail


def _mail_values(
    to: str, subject: str, body: str, *, now: datetime, kind: str, key: str | None, instance_id: int | None
) -> dict[str, Any]:
    return {
        "to_address": to.strip(),
        "subject": one_line(subject)[:300],
        "body": body,
        "kind": kind,
        "dedupe_key": key,
        "status": "pending",
        "attempts": 0,
        "created_at": now,
        "next_attempt_at": now,
        "instance_id": instance_id,
    }


def fit_key(key: str) -> str:
    """A dedupe key that fits its column: long keys keep a readable head and end in a hash."""
    if len(key) <= KEY_LENGTH:
        return key
    digest = hashlib.sha256(key.encode()).hexdigest()
    return f"{key[: KEY_LENGTH - len(digest) - 1]}#{digest}"


def one_line(text: str) -> str:
    """Header text on one line: CR, LF and other control characters become spaces."""
    return " ".join(re.sub(r"[\x00-\x1f\x7f]", " ", text).split())


# -- addresses -----------------------------------------------------------------------------------
# An ASCII addr-spec (dot-atom local part @ host name): no spaces, quotes, brackets, commas or
# line breaks, so an address can never smuggle a second recipient or a header into a message.
_ADDRESS = re.compile(
    r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*"
    r"@[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*"
)


def is_valid_address(address: str) -> bool:
    return len(address) <= 254 and _ADDRESS.fullmatch(address) is not None


@dataclass(frozen=True)
class Recipient:
    address: str
    name: str  # how the greeting addresses them; "" for a bare address
    username: str | None = None


def _recipient(username: str, display_name: str, email: str) -> Recipient | None:
    address = (email or "").strip()
    if not address:
        return None
    if not is_valid_address(address):
        log.warning("user %s has an invalid e-mail address %r: not notified", username, address)
        return None
    return Recipient(address, display_name or username, username)


# Built once (the task listener runs in every step that creates tasks) and run on the session's
# connection, like the engine's own hot-path statements.
_USER = cast(Table, User.__table__)
_USER_ROLE = cast(Table, UserRole.__table__)
_TASK = cast(Table, HumanTask.__table__)
_OUTBOX = cast(Table, OutboxMail.__table__)
_USERS_NAMED = select(_USER.c.username, _USER.c.display_name, _USER.c.email, _USER.c.active).where(
    _USER.c.username.in_(bindparam("names", expanding=True))
)
_ROLE_MEMBERS = (
    select(_USER_ROLE.c.role_name, _USER.c.username, _USER.c.display_name, _USER.c.email)
    .join(_USER, _USER.c.id == _USER_ROLE.c.user_id)
    .where(
        _USER_ROLE.c.role_name.in_(bindparam("roles", expanding=True)),
        _USER.c.active.is_(True),
        _USER.c.email != "",
    )
    .order_by(_USER.c.username)
)
_TASK_PKS = select(_TASK.c.task_id, _TASK.c.id).where(_TASK.c.task_id.in_(bindparam("ids", expanding=True)))


def _run(statement: Any, params: dict[str, Any]) -> Any:
    return db.session.connection().execute(statement, params)


class Directory:
    """Who can be reached by mail: active users with an e-mail address, looked up once per batch."""

    def __init__(self, usernames: Collection[str] = (), roles: Collection[str] = ()) -> None:
        self.users: dict[str, Recipient | None] = {}
        self.roles: dict[str, list[Recipient]] = {role: [] for role in roles}
        if usernames:
            for r in _run(_USERS_NAMED, {"names": sorted(set(usernames))}):
                self.users[r.username] = _recipient(r.username, r.display_name, r.email) if r.active else None
        if roles:
            for r in _run(_ROLE_MEMBERS, {"roles": sorted(set(roles))}):
                found = _recipient(r.username, r.display_name, r.email)
                if found is not None:
                    self.roles[r.role_name].append(found)

    def for_task(self, role: str | None, assignee: str | None, excluded: Collection[str]) -> list[Recipient]:
        """The assignee if the task has one, else every member of its role it does not exclude."""
        if assignee:
            found = self.users.get(assignee)
            return [found] if found is not None and assignee not in excluded else []
        return [r for r in self.roles.get(role or "", []) if r.username not in excluded]

    @classmethod
    def for_tasks(cls, tasks: Iterable[Any]) -> Directory:
        tasks = list(tasks)
        return cls(
            usernames={t["assignee"] for t in tasks if t["assignee"]},
            roles={t["role"] for t in tasks if not t["assignee"] and t["role"]},
        )


def excluded_users(text: str | None) -> set[str]:
    """`|alice||bob|` (HumanTask.excluded) -> {"alice", "bob"}."""
    return {name for name in (text or "").strip("|").split("||") if name}


# -- links and templates -------------------------------------------------------------------------
def base_url() -> str:
    return os.environ.get("BACKOFFICE_BASE_URL", DEFAULT_BASE_URL).rstrip("/")


def task_url(task_pk: int) -> str:
    return f"{base_url()}/tasks/{task_pk}"


def document_url(document_type: str, number: str) -> str:
    return f"{base_url()}/documents/{quote(document_type, safe='')}/{quote(number, safe='')}"


DOCUMENT_LABELS = {
    "lead": "Lead",
    "quote": "Quote",
    "sales_order": "Sales order",
    "invoice": "Invoice",
    "repair_ticket": "Repair ticket",
    "purchase_request": "Purchase request",
    "purchase_order": "Purchase order",
    "vendor_bill": "Vendor bill",
}


def document_label(document_type: str) -> str:
    return DOCUMENT_LABELS.get(document_type, document_type.replace("_", " ").capitalize())


@dataclass(frozen=True)
class MailTemplate:
    subject: Template
    body: Template

    def render(self, **values: Any) -> tuple[str, str]:
        return self.subject.substitute(values), self.body.substitute(values)


_FOOTER = "\n-- \nSent automatically by the back office; replies are not read.\n"

TEMPLATES: dict[str, MailTemplate] = {
    "task_waiting": MailTemplate(
        Template("Task waiting: $title"),
        Template(
            "Hello $name,\n\n"
            "a task is waiting for you in the back office:\n\n"
            "    $title\n"
            "$details\n"
            "Open it: $task_link\n" + _FOOTER
        ),
    ),
    "task_overdue": MailTemplate(
        Template("Overdue: $title"),
        Template(
            "Hello $name,\n\n"
            "this task was due $due and is still open:\n\n"
            "    $title\n"
            "$details\n"
            "Open it: $task_link\n" + _FOOTER
        ),
    ),
    "approval_reminder": MailTemplate(
        Template("Reminder: $label $number is waiting for your approval"),
        Template(
            "Hello $name,\n\n"
            "$label $number is still waiting for a decision.\n\n"
            "Document: $document_link\n"
            "$task_line" + _FOOTER
        ),
    ),
}


def _when(value: datetime) -> str:
    return _aware(value).astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")


def _aware(value: datetime) -> datetime:
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def _task_details(task: Any) -> str:
    lines = []
    if task["document_type"] and task["document_key"]:
        label = document_label(task["document_type"])
        lines.append(f"    {label}: {task['document_key']}")
    if task["role"] and not task["assignee"]:
        lines.append(f"    For everyone with the role: {task['role']}")
    if task["due_at"] is not None:
        lines.append(f"    Due: {_when(task['due_at'])}")
    return "".join(line + "\n" for line in lines)


def _task_mails(
    template: str, tasks: list[Any], task_pks: Callable[[list[str]], dict[str, int]], now: datetime
) -> tuple[dict[str, list[dict[str, Any]]], list[Any]]:
    """The outbox rows of one notice per recipient, by task id, and the tasks nobody can receive."""
    directory = Directory.for_tasks(tasks)
    reached: list[tuple[Any, list[Recipient]]] = []
    unreachable = []
    for task in tasks:
        recipients = directory.for_task(task["role"], task["assignee"], excluded_users(task["excluded"]))
        if recipients:
            reached.append((task, recipients))
        else:
            unreachable.append(task)
    pks = task_pks([task["task_id"] for task, _ in reached]) if reached else {}
    mails: dict[str, list[dict[str, Any]]] = {}
    for task, recipients in reached:
        for recipient in recipients:
            subject, body = TEMPLATES[template].render(
                name=recipient.name,
                title=one_line(task["title"]),
                details=_task_details(task),
                due=_when(task["due_at"]) if task["due_at"] is not None else "",
                task_link=task_url(pks[task["task_id"]]),
            )
            key = fit_key(f"{template}:{task['task_id']}:{recipient.address}")
            mails.setdefault(task["task_id"], []).append(
                _mail_values(
                    recipient.address,
                    subject,
                    body,
                    now=now,
                    kind=template,
                    key=key,
                    instance_id=task["instance_id"],
                )
            )
    return mails, unreachable


# -- "a task is waiting for you" -----------------------------------------------------------------
def notify_new_tasks(tasks: list[dict[str, Any]]) -> int:
    """Task listener: queue "a task is waiting for you" to the assignee of each new task, or to
    every active member of its role it does not exclude (four-eyes). Runs in the transaction
    that creates the tasks, so a step that rolls back queues nothing. Returns the mails queued.

    The task ids are new in this transaction, so their dedupe keys cannot be in the outbox yet:
    the rows go in with one plain INSERT."""
    if not tasks:
        return 0
    mails, _nobody = _task_mails("task_waiting", tasks, _task_pks, tasks[0]["created_at"])
    rows = [row for rows in mails.values() for row in rows]
    if rows:
        db.session.connection().execute(_OUTBOX.insert(), rows)
    return len(rows)


def _task_pks(task_ids: list[str]) -> dict[str, int]:
    return {r.task_id: r.id for r in _run(_TASK_PKS, {"ids": task_ids})}


def install(engine: Any) -> None:
    engine.task_listeners.append(notify_new_tasks)


# -- overdue tasks -------------------------------------------------------------------------------
def overdue_key(task_id: str) -> str:
    """The dedupe key that marks a task as notified: carried by its first overdue notice."""
    return f"task_overdue:{task_id}"


def notify_overdue_tasks(now: datetime, limit: int = 200) -> int:
    """Queue one "overdue" notice per recipient of every open task past its due date, exactly
    once per task, and commit. Returns how many mails were queued.

    The first notice of a task carries `overdue_key(task_id)`; the query skips tasks that have
    it, and two schedulers running at once insert it with ON CONFLICT DO NOTHING, so only one
    of them writes a task's notices. A task nobody can receive (no assignee address, no member
    of its role with one) gets a `failed` outbox row instead, so it is not looked at again."""
    now = _aware(now).astimezone(UTC)
    marker = OutboxMail.dedupe_key == literal(overdue_key("")).concat(HumanTask.task_id)
    columns = (
        HumanTask.id,
        HumanTask.task_id,
        HumanTask.instance_id,
        HumanTask.title,
        HumanTask.role,
        HumanTask.assignee,
        HumanTask.excluded,
        HumanTask.due_at,
        HumanTask.document_type,
        HumanTask.document_key,
    )
    query = (
        select(*columns)
        .where(
            HumanTask.status.in_(OPEN_TASK),
            HumanTask.due_key < now,  # due_at, or 9999-12-31 for tasks without a due date
            ~select(OutboxMail.id).where(marker).exists(),
        )
        .order_by(HumanTask.due_key, HumanTask.id)
        .limit(limit)
    )
    session = db.session
    tasks = [row._mapping for row in session.execute(query)]
    if not tasks:
        session.commit()
        return 0
    known_pks = {t["task_id"]: t["id"] for t in tasks}
    by_task, unreachable = _task_mails("task_overdue", tasks, lambda _ids: known_pks, now)
    for task in unreachable:
        reason = (
            f"the assignee {task['assignee']} is inactive or has no e-mail address"
            if task["assignee"]
            else f"no active member of role {task['role']!r} has an e-mail address"
        )
        marker_row = _mail_values(
            "",
            f"Overdue: {one_line(task['title'])}",
            "",
            now=now,
            kind="task_overdue",
            key=None,
            instance_id=task["instance_id"],
        )
        marker_row.update(status="failed", last_error=f"nobody to notify: {reason}")
        by_task[task["task_id"]] = [marker_row]
    queued = 0
    for task_id, (first, *others) in by_task.items():
        first = {**first, "dedupe_key": overdue_key(task_id)}
        marked = session.execute(_insert_ignoring_duplicates(first).returning(OutboxMail.id)).first()
        if marked is None:  # another scheduler queued this task's notices meanwhile
            continue
        if others:
            session.execute(insert(OutboxMail), others)
        queued += sum(1 for row in (first, *others) if row["status"] == "pending")
    session.commit()
    return queued


def _insert_ignoring_duplicates(values: dict[str, Any]) -> Any:
    """INSERT ... ON CONFLICT (dedupe_key) DO NOTHING, on PostgreSQL and SQLite alike."""
    dialect = postgresql if db.session.get_bind().dialect.name == "postgresql" else sqlite
    return dialect.insert(OutboxMail).values(**values).on_conflict_do_nothing(index_elements=["dedupe_key"])


# -- the send_email operation --------------------------------------------------------------------
def resolve_recipients(to: str, exclude: Collection[str] = ()) -> list[Recipient]:
    """`role:<role>` -> every active member with an address (minus `exclude`); a username ->
    that user's address (none if inactive or without one); else `to` must be an address."""
    to = (to or "").strip()
    if to.startswith("role:"):
        role = to[len("role:") :].strip()
        members = Directory(roles=[role]).roles[role]
        return [m for m in members if m.username not in exclude]
    directory = Directory(usernames=[to])
    if to in directory.users:
        found = directory.users[to]
        return [found] if found is not None else []
    if is_valid_address(to):
        return [Recipient(to, "")]
    raise InvalidData([FieldError("to", f"{to!r} is neither role:<role>, a username nor an e-mail address")])


@operation("send_email")
def send_email(
    ctx: OperationContext, to: str, template: str, document_type: str, document_number: str
) -> dict[str, Any]:
    """Mail a templated notice about a document, with links to it and to its open task.

    Role members the open task excludes (four-eyes) are left out. Idempotent per (instance,
    service task, open task, recipient): a retried step queues nothing new, while the same
    reminder reached again later for a new approval task is sent again."""
    if template not in TEMPLATES or template.startswith("task_"):
        known = sorted(name for name in TEMPLATES if not name.startswith("task_"))
        raise InvalidData([FieldError("template", f"unknown template {template!r}; known: {known}")])
    number = str(document_number)
    task = db.session.execute(
        select(HumanTask.id, HumanTask.task_id, HumanTask.excluded)
        .where(
            HumanTask.instance_id == ctx.instance_id,
            HumanTask.status.in_(OPEN_TASK),
            HumanTask.document_type == document_type,
            HumanTask.document_key == number,
        )
        .order_by(HumanTask.id)
        .limit(1)
    ).first()
    recipients = resolve_recipients(to, excluded_users(task.excluded) if task else ())
    if not recipients:
        log.warning("send_email(%r) in instance %s: nobody to send it to", to, ctx.instance_id)
    label = document_label(document_type)
    for recipient in recipients:
        subject, body = TEMPLATES[template].render(
            name=recipient.name or "there",
            label=label,
            number=number,
            document_link=document_url(document_type, number),
            task_line=f"Task: {task_url(task.id)}\n" if task else "",
        )
        occurrence = task.task_id if task else "-"
        queue_mail(
            recipient.address,
            subject,
            body,
            now=ctx.now,
            kind=template,
            dedupe_key=f"send_email:{ctx.instance_id}:{ctx.task_spec_id}:{occurrence}:{recipient.address}",
            instance_id=ctx.instance_id,
        )
    return {"queued": len(recipients), "recipients": [r.address for r in recipients]}
