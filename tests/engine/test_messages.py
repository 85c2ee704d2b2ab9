"""Messages correlate to the waiting instance; nothing waiting is a clear error that changes nothing."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest
from sqlalchemy import func, select

from engine import NotWaiting
from engine.db import db
from engine.models import AuditEvent, MessageWait, ProcessInstance
from tests.conftest import ALEX, read_files

BPMN = Path(__file__).parent / "bpmn"


@pytest.fixture
def deployed(engine):
    engine.deploy(read_files(BPMN / "payment.bpmn"))
    return engine


def test_message_reaches_only_the_correlated_instance(deployed):
    first = deployed.start_process("payment", {"invoice_number": "INV-2026-0001"}, ALEX)
    second = deployed.start_process("payment", {"invoice_number": "INV-2026-0002"}, ALEX)
    assert db.session.scalar(select(func.count()).select_from(MessageWait)) == 2
    delivered = deployed.correlate_message(
        "payment_received",
        {"invoice_number": "INV-2026-0002"},
        {"invoice_number": "INV-2026-0002", "amount": "150.00"},
    )
    assert delivered == [second]
    assert db.session.get(ProcessInstance, second).status == "completed"
    assert db.session.get(ProcessInstance, first).status == "waiting"
    assert deployed.instance_data(second)["paid"] == Decimal("150.00")
    events = db.session.scalars(select(AuditEvent.event).where(AuditEvent.instance_id == second)).all()
    assert "message_received" in events


def test_message_nobody_waits_for_changes_nothing(deployed):
    instance_id = deployed.start_process("payment", {"invoice_number": "INV-2026-0001"}, ALEX)
    revision = db.session.get(ProcessInstance, instance_id).revision
    with pytest.raises(NotWaiting, match=r"payment_received.*invoice_number=INV-2026-9999"):
        deployed.correlate_message("payment_received", {"invoice_number": "INV-2026-9999"}, {"amount": "1"})
    deployed.correlate_message(
        "payment_received",
        {"invoice_number": "INV-2026-0001"},
        {"invoice_number": "INV-2026-0001", "amount": "1"},
    )
    with pytest.raises(NotWaiting):  # an invoice already paid: nothing waits any more
        deployed.correlate_message("payment_received", {"invoice_number": "INV-2026-0001"}, {"amount": "1"})
    assert db.session.get(ProcessInstance, instance_id).revision == revision + 1
