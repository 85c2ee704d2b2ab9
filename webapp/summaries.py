"""What a task is about, in one line: the document's party (customer, requester, vendor) and
amount, looked up for a whole page of tasks with one query per document kind."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from sqlalchemy import select

from engine import TaskView
from engine.business.common import Customer, Vendor
from engine.business.purchasing import PurchaseOrder, PurchaseRequest
from engine.business.repairs import RepairTicket
from engine.business.sales import Invoice, Lead, Quote, SalesOrder
from engine.db import db


@dataclass(frozen=True)
class Summary:
    party: str | None  # the customer, or for purchases the requester or vendor
    amount: Decimal | None
    currency: str | None
    author: str | None = None  # who prepared / requested it (quotes, purchase requests)


def _customers(ids: set[int]) -> dict[int, str]:
    if not ids:
        return {}
    rows = db.session.execute(select(Customer.id, Customer.name).where(Customer.id.in_(sorted(ids))))
    return {row.id: row.name for row in rows}


def summaries(tasks: list[TaskView]) -> dict[tuple[str, str], Summary]:
    """(document type, number) → Summary for the documents a page of tasks is about."""
    keys: dict[str, list[str]] = {}
    for t in tasks:
        if t.document_type and t.document_key:
            keys.setdefault(t.document_type, []).append(t.document_key)
    found: dict[tuple[str, str], Any] = {}

    def load(kind: str, model: Any) -> list[Any]:
        numbers = sorted(set(keys.get(kind, ())))
        rows = list(db.session.scalars(select(model).where(model.number.in_(numbers)))) if numbers else []
        for row in rows:
            found[(kind, row.number)] = row
        return rows

    customer_ids: set[int] = set()
    for kind, model in (
        ("lead", Lead),
        ("quote", Quote),
        ("sales_order", SalesOrder),
        ("invoice", Invoice),
        ("repair_ticket", RepairTicket),
    ):
        customer_ids.update(row.customer_id for row in load(kind, model))
    load("purchase_request", PurchaseRequest)
    orders = load("purchase_order", PurchaseOrder)
    names = _customers(customer_ids)
    vendor_ids = sorted({o.vendor_id for o in orders})
    vendors: dict[int, str] = {
        row.id: row.name
        for row in db.session.execute(select(Vendor.id, Vendor.name).where(Vendor.id.in_(vendor_ids)))
    }

    out: dict[tuple[str, str], Summary] = {}
    for (kind, number), doc in found.items():
        if kind == "lead":
            out[(kind, number)] = Summary(names.get(doc.customer_id), doc.estimated_value, None)
        elif kind in ("quote", "sales_order"):
            out[(kind, number)] = Summary(
                names.get(doc.customer_id), doc.total_gross, doc.currency, getattr(doc, "author", None)
            )
        elif kind == "invoice":
            out[(kind, number)] = Summary(names.get(doc.customer_id), doc.balance, doc.currency)
        elif kind == "repair_ticket":
            out[(kind, number)] = Summary(names.get(doc.customer_id), doc.estimate, None)
        elif kind == "purchase_request":
            out[(kind, number)] = Summary(doc.requested_by, doc.amount, doc.currency, doc.requested_by)
        elif kind == "purchase_order":
            out[(kind, number)] = Summary(vendors.get(doc.vendor_id), doc.total, doc.currency)
    return out
