"""The demo data: every interesting stage exists, reached through the real processes."""

from __future__ import annotations

from sqlalchemy import func, select

from engine.business.sales import Invoice
from engine.business.seed import seed_demo
from engine.db import db
from engine.models import HumanTask, Incident, ProcessInstance
from webapp.demo import seed_users


def test_demo_seed_reaches_every_stage(office, clock):
    seed_users()
    assert seed_demo(office, clock.current) == 8
    open_specs = set(
        db.session.scalars(select(HumanTask.spec_id).where(HumanTask.status.in_(("open", "claimed"))))
    )
    assert {
        "qualify_lead",
        "approve_discount",
        "dispatch_ticket",
        "approve_director",
        "call_customer",
        "escalate_overdue_invoice",
    } <= open_specs
    levels = sorted(db.session.scalars(select(Invoice.dunning_level)))
    assert levels == [0, 1, 2, 2]  # current, level 1, level 2, and level 2 escalated to the manager
    assert db.session.scalar(select(func.count()).select_from(Incident)) == 0
    statuses = set(db.session.scalars(select(ProcessInstance.status)))
    assert statuses == {"running"}
