"""Mail: the outbox, the notices it is filled with, and the SMTP sender against a real server.

The server is aiosmtpd on 127.0.0.1; the outbox lives in the test database (SQLite and
PostgreSQL), and time is the engine clock the test moves by hand.
"""

from __future__ import annotations

import socket
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from email import message_from_bytes, policy
from email.message import EmailMessage
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any, TypeVar

import pytest
from aiosmtpd.controller import Controller
from sqlalchemy import delete, func, select, update

from engine import InvalidData
from engine.business.mail import OutboxMail, notify_new_tasks, notify_overdue_tasks, queue_mail, send_email
from engine.db import db
from engine.mailer import CLAIM_LEASE, MailSettings, send_pending
from engine.models import HumanTask, User
from engine.operations import OperationContext
from engine.scheduler import tick
from engine.users import add_user
from tests.conftest import SALLY, read_files

BPMN = Path(__file__).resolve().parent.parent / "engine" / "bpmn"
SENDER = "Back office <office@example.com>"
T = TypeVar("T")

# A manager's approval task with a non-interrupting 2-day reminder that calls send_email, as
# purchase_approval does. Process id "reminder" so it finds its form in tests/engine/forms.
REMINDER_BPMN = b"""<?xml version="1.0" encoding="UTF-8"?>
<bpmn:definitions xmlns:bpmn="http://www.omg.org/spec/BPMN/20100524/MODEL"
  xmlns:spiffworkflow="http://spiffworkflow.org/bpmn/schema/1.0/core"
  id="Defs" targetNamespace="http://bpmn.io/schema/bpmn">
  <bpmn:collaboration id="C">
    <bpmn:participant id="P" name="Reminder" processRef="reminder"/>
  </bpmn:collaboration>
  <bpmn:process id="reminder" name="Approval with reminder" isExecutable="true">
    <bpmn:laneSet id="LS"><bpmn:lane id="L1" name="manager">
      <bpmn:flowNodeRef>start</bpmn:flowNodeRef><bpmn:flowNodeRef>work</bpmn:flowNodeRef>
      <bpmn:flowNodeRef>two_days</bpmn:flowNodeRef><bpmn:flowNodeRef>remind</bpmn:flowNodeRef>
      <bpmn:flowNodeRef>end</bpmn:flowNodeRef><bpmn:flowNodeRef>reminded</bpmn:flowNodeRef>
    </bpmn:lane></bpmn:laneSet>
    <bpmn:startEvent id="start" name="Request submitted"><bpmn:outgoing>f1</bpmn:outgoing></bpmn:startEvent>
    <bpmn:userTask id="work" name="Approve request">
      <bpmn:extensionElements><spiffworkflow:properties>
        <spiffworkflow:property name="formJsonSchemaFilename" value="work.json"/>
        <spiffworkflow:property name="title" value="&quot;Approve %s&quot; % number"/>
        <spiffworkflow:property name="excludedUsers" value="[started_by]"/>
        <spiffworkflow:property name="documentType" value="&quot;purchase_request&quot;"/>
        <spiffworkflow:property name="documentKey" value="number"/>
      </spiffworkflow:properties></bpmn:extensionElements>
      <bpmn:incoming>f1</bpmn:incoming><bpmn:outgoing>f2</bpmn:outgoing>
    </bpmn:userTask>
    <bpmn:boundaryEvent id="two_days" name="2 days without decision" attachedToRef="work"
      cancelActivity="false">
      <bpmn:outgoing>f3</bpmn:outgoing>
      <bpmn:timerEventDefinition id="T1">
        <bpmn:timeDuration>P2D</bpmn:timeDuration>
      </bpmn:timerEventDefinition>
    </bpmn:boundaryEvent>
    <bpmn:serviceTask id="remind" name="Remind managers">
      <bpmn:extensionElements>
        <spiffworkflow:serviceTaskOperator id="send_email" resultVariable="reminder">
          <spiffworkflow:parameters>
            <spiffworkflow:parameter id="to" type="any" value="&quot;role:manager&quot;"/>
            <spiffworkflow:parameter id="template" type="any" value="&quot;approval_reminder&quot;"/>
            <spiffworkflow:parameter id="document_type" type="any" value="&quot;purchase_request&quot;"/>
            <spiffworkflow:parameter id="document_number" type="any" value="number"/>
          </spiffworkflow:parameters>
        </spiffworkflow:serviceTaskOperator>
      </bpmn:extensionElements>
      <bpmn:incoming>f3</bpmn:incoming><bpmn:outgoing>f4</bpmn:outgoing>
    </bpmn:serviceTask>
    <bpmn:endEvent id="end" name="Decided"><bpmn:incoming>f2</bpmn:incoming></bpmn:endEvent>
    <bpmn:endEvent id="reminded" name="Reminder sent"><bpmn:incoming>f4</bpmn:incoming></bpmn:endEvent>
    <bpmn:sequenceFlow id="f1" sourceRef="start" targetRef="work"/>
    <bpmn:sequenceFlow id="f2" sourceRef="work" targetRef="end"/>
    <bpmn:sequenceFlow id="f3" sourceRef="two_days" targetRef="remind"/>
    <bpmn:sequenceFlow id="f4" sourceRef="remind" targetRef="reminded"/>
  </bpmn:process>
</bpmn:definitions>
"""


# -- a real SMTP server ----------------------------------------------------------------------------
class Mailbox:
    """An aiosmtpd handler keeping what it accepts; `refuse` makes it answer DATA with an error."""

    def __init__(self) -> None:
        self.port = _free_port()
        self.messages: list[EmailMessage] = []
        self.envelopes: list[tuple[str, list[str]]] = []
        self.refuse: str | None = None
        self.controller: Controller | None = None

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        if self.refuse:
            return self.refuse
        self.envelopes.append((envelope.mail_from, list(envelope.rcpt_tos)))
        self.messages.append(message_from_bytes(envelope.original_content, policy=policy.default))  # type: ignore[arg-type]
        return "250 Message accepted for delivery"

    def start(self) -> None:
        """Listen on the same port again (a stopped Controller cannot restart: a new one)."""
        self.controller = Controller(self, hostname="127.0.0.1", port=self.port)
        self.controller.start()

    def stop(self) -> None:
        if self.controller is not None:
            self.controller.stop()
            self.controller = None

    def subjects(self) -> Counter[str]:
        return Counter(str(m["Subject"]) for m in self.messages)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
def smtp() -> Iterator[Mailbox]:
    mailbox = Mailbox()
    mailbox.start()
    yield mailbox
    mailbox.stop()


@pytest.fixture
def mail_config(smtp: Mailbox) -> dict[str, Any]:
    return {"MAIL_SERVER": "127.0.0.1", "MAIL_PORT": smtp.port, "MAIL_DEFAULT_SENDER": SENDER}


# -- helpers -----------------------------------------------------------------------------------------
def outbox() -> list[OutboxMail]:
    db.session.expire_all()
    return list(db.session.scalars(select(OutboxMail).order_by(OutboxMail.id)))


def text(message: EmailMessage) -> str:
    return str(message.get_content()).replace("\r\n", "\n")


def utc(value: datetime | None) -> datetime | None:
    return value if value is None or value.tzinfo else value.replace(tzinfo=UTC)


def queue(n: int, now: datetime, to: str = "mona@example.com") -> None:
    for i in range(n):
        queue_mail(to, f"Notice {i}", f"Body {i}\n", now=now, kind="test")
    db.session.commit()


def people() -> None:
    """sally (sales + manager: four-eyes keeps her off her own requests), two reachable
    managers, one without an address and one who left."""
    add_user("sally", ["sales", "manager"], email="sally@example.com")
    add_user("mona", ["manager"], email="mona@example.com", display_name="Mona Lisa")
    add_user("mike", ["manager"], email="mike@example.com", display_name="Mike Müller")
    add_user("sam", ["manager"], email="")
    add_user("olga", ["manager"], email="olga@example.com")
    db.session.scalars(select(User).where(User.username == "olga")).one().active = False
    db.session.commit()


def in_two_threads(app: Any, work: Callable[[], T]) -> list[T]:
    """Run `work` in two threads released at the same moment, each in its own app context
    (its own session and connection); re-raise what either raised."""
    start = threading.Barrier(2)
    results: list[T] = []
    errors: list[BaseException] = []

    def run() -> None:
        try:
            with app.app_context():
                start.wait()
                results.append(work())
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    if errors:
        raise errors[0]
    assert len(results) == 2
    return results


def ctx(instance_id: int, now: datetime, task_spec_id: str = "remind") -> OperationContext:
    return OperationContext(
        instance_id=instance_id, process_id="reminder", task_spec_id=task_spec_id, now=now, data={}
    )


# -- the sender ----------------------------------------------------------------------------------------
def test_queued_mail_arrives_once_with_proper_headers(app, clock, smtp, mail_config):
    queue_mail(
        "mona@example.com",
        "Rechnung INV-2026-0001: Zahlungserinnerung für Müller",
        "Grüße,\nthe back office\n",
        now=clock.current,
        kind="dunning",
    )
    db.session.commit()
    report = send_pending(clock.current, mail_config)
    assert (report.sent, report.retrying, report.failed) == (1, 0, 0)
    [message] = smtp.messages
    assert smtp.envelopes == [("office@example.com", ["mona@example.com"])]
    assert message["To"] == "mona@example.com"
    assert message["From"] == SENDER
    assert message["Subject"] == "Rechnung INV-2026-0001: Zahlungserinnerung für Müller"
    assert text(message) == "Grüße,\nthe back office\n"
    assert message.get_content_charset() == "utf-8"
    assert parsedate_to_datetime(message["Date"]) == clock.current
    assert message["Message-ID"].endswith("@example.com>")
    assert message["Auto-Submitted"] == "auto-generated"
    [row] = outbox()
    assert (row.status, row.attempts, utc(row.sent_at), row.last_error) == ("sent", 1, clock.current, None)

    assert send_pending(clock.advance(hours=1), mail_config).attempted == 0
    assert len(smtp.messages) == 1


def test_two_senders_at_once_deliver_every_mail_exactly_once(app, clock, smtp, mail_config):
    queue(30, clock.current)
    reports = in_two_threads(app, lambda: send_pending(clock.current, mail_config, limit=100))
    assert sum(r.sent for r in reports) == 30
    assert smtp.subjects() == Counter({f"Notice {i}": 1 for i in range(30)})
    assert len({m["Message-ID"] for m in smtp.messages}) == 30
    assert {m.status for m in outbox()} == {"sent"}
    assert send_pending(clock.current, mail_config).attempted == 0


def test_refused_mail_is_retried_with_backoff_and_delivered_once(app, clock, smtp, mail_config):
    queue(1, clock.current)
    smtp.refuse = "550 Mailbox unavailable"
    start = clock.current
    assert send_pending(clock.current, mail_config).retrying == 1
    [row] = outbox()
    assert (row.status, row.attempts) == ("pending", 1)
    assert utc(row.next_attempt_at) == start + timedelta(minutes=1)
    assert "550 Mailbox unavailable" in (row.last_error or "")
    assert send_pending(clock.advance(seconds=59), mail_config).attempted == 0  # not due yet

    assert send_pending(clock.advance(seconds=1), mail_config).retrying == 1
    [row] = outbox()
    assert row.attempts == 2 and utc(row.next_attempt_at) == clock.current + timedelta(minutes=5)

    smtp.refuse = None
    assert send_pending(clock.advance(minutes=4), mail_config).attempted == 0
    assert send_pending(clock.advance(minutes=1), mail_config).sent == 1
    assert send_pending(clock.advance(hours=3), mail_config).attempted == 0
    assert smtp.subjects() == Counter({"Notice 0": 1})
    [row] = outbox()
    assert (row.status, row.attempts) == ("sent", 3)


def test_server_down_then_back_delivers_each_mail_once(app, clock, smtp, mail_config):
    queue(3, clock.current)
    smtp.stop()
    report = send_pending(clock.current, mail_config)
    assert (report.sent, report.retrying) == (0, 3)
    assert all(m.status == "pending" and "Connection" in (m.last_error or "") for m in outbox())
    smtp.start()
    assert send_pending(clock.advance(seconds=30), mail_config).attempted == 0
    assert send_pending(clock.advance(seconds=30), mail_config).sent == 3
    assert send_pending(clock.advance(hours=1), mail_config).attempted == 0
    assert smtp.subjects() == Counter({"Notice 0": 1, "Notice 1": 1, "Notice 2": 1})


def test_gives_up_after_the_last_attempt_keeping_the_error(app, clock, smtp, mail_config):
    queue(1, clock.current)
    smtp.refuse = "550 No such user here"
    config = {**mail_config, "MAIL_MAX_ATTEMPTS": 3}
    assert send_pending(clock.current, config).retrying == 1
    assert send_pending(clock.advance(minutes=1), config).retrying == 1
    assert send_pending(clock.advance(minutes=5), config).failed == 1
    [row] = outbox()
    assert (row.status, row.attempts) == ("failed", 3)
    assert "550 No such user here" in (row.last_error or "")
    smtp.refuse = None
    assert send_pending(clock.advance(days=1), config).attempted == 0
    assert smtp.messages == []


def test_a_claim_left_by_a_dead_sender_is_taken_over_when_its_lease_ends(app, clock, smtp, mail_config):
    queue(1, clock.current)
    db.session.execute(
        update(OutboxMail).values(status="sending", attempts=1, next_attempt_at=clock.current + CLAIM_LEASE)
    )
    db.session.commit()
    assert send_pending(clock.advance(minutes=9), mail_config).attempted == 0  # still leased
    assert send_pending(clock.advance(minutes=1), mail_config).sent == 1
    [row] = outbox()
    assert (row.status, row.attempts) == ("sent", 2)
    assert len(smtp.messages) == 1


def test_starttls_demanded_but_not_offered_sends_nothing_in_clear(app, clock, smtp, mail_config):
    queue(1, clock.current)
    report = send_pending(clock.current, {**mail_config, "MAIL_USE_TLS": "true"})
    assert report.retrying == 1
    [row] = outbox()
    assert "STARTTLS" in (row.last_error or "")
    assert smtp.messages == []


def test_settings_read_as_environment_variables_give_them():
    settings = MailSettings.from_config(
        {
            "MAIL_SERVER": "smtp.example.com",
            "MAIL_PORT": "587",
            "MAIL_USE_TLS": "true",
            "MAIL_USE_SSL": "false",
            "MAIL_USERNAME": "office",
            "MAIL_PASSWORD": "secret",
            "MAIL_DEFAULT_SENDER": "Büro <office@example.com>",
        }
    )
    assert settings is not None
    assert (settings.port, settings.use_tls, settings.use_ssl) == (587, True, False)
    assert (settings.sender.display_name, settings.sender.addr_spec) == ("Büro", "office@example.com")
    assert MailSettings.from_config({"MAIL_SERVER": "mx", "MAIL_DEFAULT_SENDER": "a@b"}).port == 25
    assert MailSettings.from_config({"MAIL_SERVER": " "}) is None
    with pytest.raises(ValueError, match="MAIL_DEFAULT_SENDER"):
        MailSettings.from_config({"MAIL_SERVER": "mx", "MAIL_DEFAULT_SENDER": "office\r\nBcc: x@y"})
    with pytest.raises(ValueError, match="exclude each other"):
        MailSettings.from_config({"MAIL_SERVER": "mx", "MAIL_USE_TLS": 1, "MAIL_USE_SSL": "yes"})


def test_without_mail_server_mail_stays_in_the_outbox(app, clock, smtp):
    queue(1, clock.current)
    report = send_pending(clock.current, {"MAIL_DEFAULT_SENDER": SENDER})
    assert report.skipped and report.attempted == 0
    [row] = outbox()
    assert (row.status, row.attempts) == ("pending", 0)
    assert smtp.messages == []


def test_rolled_back_transaction_leaves_nothing_in_the_outbox(app, clock, smtp, mail_config):
    queue_mail("mona@example.com", "Never sent", "Body", now=clock.current)
    db.session.rollback()
    assert outbox() == []
    assert send_pending(clock.current, mail_config).attempted == 0
    assert smtp.messages == []


def test_header_injection_is_refused_not_sent(app, clock, smtp, mail_config):
    queue_mail("mona@example.com\r\nBcc: eve@example.com", "Hello", "Body", now=clock.current)
    flattened = queue_mail("mona@example.com", "Hello\r\nBcc: eve@example.com", "Body", now=clock.current)
    db.session.commit()
    assert flattened.subject == "Hello Bcc: eve@example.com"  # one line: no header can hide in it
    db.session.add(
        OutboxMail(
            to_address="mona@example.com",
            subject="Hi\nBcc: eve@example.com",
            body="written around queue_mail",
            created_at=clock.current,
            next_attempt_at=clock.current,
        )
    )
    db.session.commit()
    report = send_pending(clock.current, mail_config)
    assert (report.sent, report.failed) == (1, 2)
    bad_address, sent, bad_subject = outbox()
    assert (bad_address.status, bad_subject.status, sent.status) == ("failed", "failed", "sent")
    assert "invalid recipient address" in (bad_address.last_error or "")
    assert "line break" in (bad_subject.last_error or "")
    assert [rcpt for _, rcpt in smtp.envelopes] == [["mona@example.com"]]
    [message] = smtp.messages
    assert message["Bcc"] is None and message["Subject"] == "Hello Bcc: eve@example.com"


def test_queue_mail_with_a_dedupe_key_queues_once(app, clock):
    first = queue_mail("a@example.com", "Letter", "1", now=clock.current, dedupe_key="letter:1")
    again = queue_mail("a@example.com", "Letter", "2", now=clock.current, dedupe_key="letter:1")
    db.session.commit()
    assert again is first
    long_key = "x" * 500
    queue_mail("a@example.com", "Long", "1", now=clock.current, dedupe_key=long_key)
    db.session.commit()
    queue_mail("a@example.com", "Long", "2", now=clock.current, dedupe_key=long_key)
    db.session.commit()
    assert [m.body for m in outbox()] == ["1", "1"]


# -- "a task is waiting for you" -------------------------------------------------------------------
def test_new_task_notifies_its_role_but_not_the_excluded_user(engine, clock, smtp, mail_config):
    people()
    engine.deploy(read_files(BPMN / "three_steps.bpmn"))
    instance_id = engine.start_process("three_steps", {}, SALLY)
    [enter] = outbox()
    assert (enter.to_address, enter.kind, enter.subject) == (
        "sally@example.com",
        "task_waiting",
        "Task waiting: Enter request",
    )
    assert enter.instance_id == instance_id

    task = engine.tasks_for(SALLY).tasks[0]
    engine.complete_task(task.id, SALLY, {"subject": "Laptop", "amount": 1200})
    approve = [m for m in outbox() if m.subject == "Task waiting: Approve Laptop"]
    # sally holds the manager role but started the request; sam has no address; olga left
    assert sorted(m.to_address for m in approve) == ["mike@example.com", "mona@example.com"]
    approve_pk = db.session.scalar(select(HumanTask.id).where(HumanTask.spec_id == "approve"))
    assert f"http://127.0.0.1:5000/tasks/{approve_pk}" in approve[0].body
    assert "Request: Laptop" in approve[0].body

    assert send_pending(clock.current, mail_config).sent == 3
    by_recipient = {m["To"]: m for m in smtp.messages}
    assert set(by_recipient) == {"sally@example.com", "mike@example.com", "mona@example.com"}
    assert text(by_recipient["mike@example.com"]).startswith("Hello Mike Müller,")


def test_assigned_task_notifies_only_its_assignee(engine, clock, monkeypatch):
    people()
    monkeypatch.setenv("BACKOFFICE_BASE_URL", "https://office.example.com/")
    engine.deploy(read_files(BPMN / "three_steps.bpmn"))
    engine.start_process("three_steps", {}, SALLY)
    task = db.session.scalars(select(HumanTask)).one()
    row = {c.name: getattr(task, c.name) for c in HumanTask.__table__.c}
    db.session.execute(delete(OutboxMail))  # the notice to the sales role

    assert notify_new_tasks([{**row, "assignee": "mona"}]) == 1
    assert notify_new_tasks([{**row, "assignee": "sam"}]) == 0  # no address
    assert notify_new_tasks([{**row, "assignee": "mona", "excluded": "|mona|"}]) == 0
    [mail] = outbox()
    assert mail.to_address == "mona@example.com"
    assert f"https://office.example.com/tasks/{task.id}" in mail.body


# -- send_email --------------------------------------------------------------------------------------
def test_send_email_reminds_the_role_once_per_open_task(engine, clock, smtp, mail_config):
    people()
    engine.deploy({"reminder.bpmn": REMINDER_BPMN})
    instance_id = engine.start_process("reminder", {"number": "PR-2026-0007"}, SALLY)
    db.session.execute(delete(OutboxMail))  # the "task waiting" notices
    db.session.commit()

    clock.advance(days=2, minutes=1)
    assert engine.fire_due_timers() == 1
    reminders = outbox()
    assert sorted(m.to_address for m in reminders) == ["mike@example.com", "mona@example.com"]
    assert {m.kind for m in reminders} == {"approval_reminder"}
    assert {m.subject for m in reminders} == {
        "Reminder: Purchase request PR-2026-0007 is waiting for your approval"
    }
    task_pk = db.session.scalar(select(HumanTask.id).where(HumanTask.instance_id == instance_id))
    body = reminders[0].body
    assert "http://127.0.0.1:5000/documents/purchase_request/PR-2026-0007" in body
    assert f"http://127.0.0.1:5000/tasks/{task_pk}" in body
    assert engine.instance_data(instance_id)["reminder"] == {
        "queued": 2,
        "recipients": ["mike@example.com", "mona@example.com"],
    }

    # a retried step runs the operation again: nothing new is queued
    result = send_email(
        ctx(instance_id, clock.current),
        to="role:manager",
        template="approval_reminder",
        document_type="purchase_request",
        document_number="PR-2026-0007",
    )
    db.session.commit()
    assert result["queued"] == 2 and len(outbox()) == 2
    assert send_pending(clock.current, mail_config).sent == 2
    assert sorted(m["To"] for m in smtp.messages) == ["mike@example.com", "mona@example.com"]


def test_send_email_to_a_username_or_an_address(app, clock):
    people()
    for to in ("mona", "someone@example.org", "sam"):
        send_email(
            ctx(1, clock.current, task_spec_id=f"remind_{to}"),
            to=to,
            template="approval_reminder",
            document_type="quote",
            document_number="Q-2026-0001",
        )
    db.session.commit()
    assert [(m.to_address, m.subject) for m in outbox()] == [
        ("mona@example.com", "Reminder: Quote Q-2026-0001 is waiting for your approval"),
        ("someone@example.org", "Reminder: Quote Q-2026-0001 is waiting for your approval"),
    ]
    assert outbox()[0].body.startswith("Hello Mona Lisa,")
    with pytest.raises(InvalidData, match="to"):
        send_email(
            ctx(1, clock.current),
            to="nobody here",
            template="approval_reminder",
            document_type="quote",
            document_number="Q-1",
        )
    with pytest.raises(InvalidData, match="template"):
        send_email(
            ctx(1, clock.current),
            to="mona",
            template="nonsense",
            document_type="quote",
            document_number="Q-1",
        )


# -- overdue notices -----------------------------------------------------------------------------------
def test_overdue_task_is_announced_exactly_once(engine, clock, smtp, mail_config):
    people()
    add_user("sid", ["sales"], email="sid@example.com")
    engine.deploy(read_files(BPMN / "three_steps.bpmn"))
    engine.start_process("three_steps", {}, SALLY)  # "Enter request" (sales) is due in one day
    engine.start_process("three_steps", {}, SALLY)
    done = engine.tasks_for(SALLY).tasks[-1]
    engine.complete_task(done.id, SALLY, {"subject": "Chair", "amount": 90})  # in time: no notice
    db.session.execute(delete(OutboxMail))
    db.session.commit()

    assert notify_overdue_tasks(clock.advance(hours=23)) == 0
    assert notify_overdue_tasks(clock.advance(hours=2)) == 2
    assert notify_overdue_tasks(clock.advance(hours=1)) == 0
    assert notify_overdue_tasks(clock.advance(days=3)) == 0
    notices = outbox()
    assert sorted(m.to_address for m in notices) == ["sally@example.com", "sid@example.com"]
    assert {m.subject for m in notices} == {"Overdue: Enter request"}
    assert "was due 2026-11-03 09:00 UTC" in notices[0].body
    assert send_pending(clock.current, mail_config).sent == 2
    assert smtp.subjects() == Counter({"Overdue: Enter request": 2})


def test_two_schedulers_announce_an_overdue_task_once(app, engine, clock):
    people()
    engine.deploy(read_files(BPMN / "three_steps.bpmn"))
    for _ in range(5):
        engine.start_process("three_steps", {}, SALLY)
    db.session.execute(delete(OutboxMail))
    db.session.commit()
    now = clock.advance(days=2)
    counts = in_two_threads(app, lambda: notify_overdue_tasks(now))
    assert sum(counts) == 5
    assert db.session.scalar(select(func.count()).select_from(OutboxMail)) == 5


def test_overdue_task_nobody_can_receive_is_recorded_once(engine, clock):
    engine.deploy(read_files(BPMN / "three_steps.bpmn"))
    engine.start_process("three_steps", {}, SALLY)  # nobody holds "sales" in this database
    assert notify_overdue_tasks(clock.advance(days=2)) == 0
    assert notify_overdue_tasks(clock.advance(days=1)) == 0
    [marker] = outbox()
    assert (marker.status, marker.kind, marker.to_address) == ("failed", "task_overdue", "")
    assert "no active member of role 'sales'" in (marker.last_error or "")


def test_scheduler_tick_announces_overdue_tasks_and_sends_mail(app, engine, clock, smtp, mail_config):
    people()
    engine.deploy(read_files(BPMN / "three_steps.bpmn"))
    engine.start_process("three_steps", {}, SALLY)
    app.config.update(mail_config)
    clock.advance(days=2)
    tick(app)
    assert smtp.subjects() == Counter({"Task waiting: Enter request": 1, "Overdue: Enter request": 1})
    tick(app)
    assert len(smtp.messages) == 2
