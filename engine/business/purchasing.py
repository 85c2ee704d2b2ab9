"""Purchasing: requests and their approval history, purchase orders, goods receipts (partial
ones too) and vendor bills with the three-way match of order, receipt and bill.

The `purchase_approval` process calls the operations below; `open_approvals()` feeds the
report of requests waiting for a decision.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    Date,
    DateTime,
    ForeignKey,
    Integer,
    String,
    Text,
    select,
    update,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from ..db import db
from ..errors import FieldError, InvalidData, InvalidState
from ..models import HumanTask
from ..operations import OperationContext, operation
from .common import (
    CURRENCIES,
    MONEY,
    QTY,
    RATE,
    Model,
    Product,
    Vendor,
    document_by_number,
    find_or_create_vendor,
    line_amounts,
    money,
    money_text,
    next_number,
    parse_day,
    product_by_code,
    record_event,
    status_setter,
    to_decimal,
)
from .mail import is_valid_address, queue_mail

DEFAULT_CURRENCY = "EUR"
PRICE_TOLERANCE = Decimal("0.01")  # three-way match: billed vs ordered unit price, and totals
REQUEST_STATUSES = ("submitted", "approved", "rejected", "withdrawn", "ordered")
APPROVAL_TASKS = {"approve_manager": "manager", "approve_director": "director"}
OPEN_TASK_STATES = ("open", "claimed")


# -- documents ------------------------------------------------------------------------------------
class PurchaseRequest(Model):
    __tablename__ = "purchase_request"
    id: Mapped[int] = mapped_column(primary_key=True)
    number: Mapped[str] = mapped_column(String(40), unique=True)
    requested_by: Mapped[str] = mapped_column(String(80), index=True)
    reason: Mapped[str] = mapped_column(Text)
    suggested_vendor: Mapped[str] = mapped_column(String(200), default="")
    needed_by: Mapped[date] = mapped_column(Date)
    currency: Mapped[str] = mapped_column(String(3), default=DEFAULT_CURRENCY)
    amount: Mapped[Decimal] = mapped_column(MONEY)
    status: Mapped[str] = mapped_column(String(20), index=True)
    revision: Mapped[int] = mapped_column(Integer, default=1)
    decided_by: Mapped[str | None] = mapped_column(String(80))
    decided_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    instance_id: Mapped[int | None] = mapped_column(Integer, index=True)
    source_key: Mapped[str | None] = mapped_column(String(200), unique=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    lines: Mapped[list[PurchaseRequestLine]] = relationship(
        cascade="all, delete-orphan", order_by="PurchaseRequestLine.position", lazy="selectin"
    )


class PurchaseRequestLine(Model):
    __tablename__ = "purchase_request_line"
    id: Mapped[int] = mapped_column(primary_key=True)
    request_id: Mapped[int] = mapped_column(ForeignKey("purchase_request.id"), index=True)
    position: Mapped[int] = mapped_column(Integer)
    product_id: Mapped[int] = mapped_column(ForeignKey("product.id"))
    product: Mapped[str] = mapped_column(String(60))  # the catalogue code at the time
    description: Mapped[str] = mapped_column(String(200))
    qty: Mapped[Decimal] = mapped_column(QTY)
    unit_price: Mapped[Decimal] = mapped_column(MONEY)
    amount: Mapped[Decimal] = mapped_column(MONEY)


class PurchaseOrder(Model):
    __tablename__ = "purchase_order"
    id: Mapped[int] = mapped_column(primary_key=True)
    number: Mapped[str] = mapped_column(String(40), unique=True)
    request_id: Mapped[int | None] = mapped_column(ForeignKey("purchase_request.id"), index=True)
    vendor_id: Mapped[int] = mapped_column(ForeignKey("vendor.id"), index=True)
    vendor_email: Mapped[str] = mapped_column(String(200))
    vendor_reference: Mapped[str] = mapped_column(String(100), default="")
    rfq_summary: Mapped[str] = mapped_column(Text, default="")
    currency: Mapped[str] = mapped_column(String(3), default=DEFAULT_CURRENCY)
    total_net: Mapped[Decimal] = mapped_column(MONEY)
    total_tax: Mapped[Decimal] = mapped_column(MONEY)
    total: Mapped[Decimal] = mapped_column(MONEY)
    expected_date: Mapped[date] = mapped_column(Date)
    delivery_due: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    vendor_note: Mapped[str] = mapped_column(Text, default="")
    # open, partially_received, received, billed (payment scheduled)
    status: Mapped[str] = mapped_column(String(20), index=True)
    instance_id: Mapped[int | None] = mapped_column(Integer, index=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    lines: Mapped[list[PurchaseOrderLine]] = relationship(
        cascade="all, delete-orphan", order_by="PurchaseOrderLine.position", lazy="selectin"
    )


class PurchaseOrderLine(Model):
    __tablename__ = "purchase_order_line"
    id: Mapped[int] = mapped_column(primary_key=True)
    order_id: Mapped[int] = mapped_column(ForeignKey("purchase_order.id"), index=True)
    position: Mapped[int] = mapped_column(Integer)
    product_id: Mapped[int] = mapped_column(ForeignKey("product.id"))
    product: Mapped[str] = mapped_column(String(60))
    description: Mapped[str] = mapped_column(String(200))
    qty: Mapped[Decimal] = mapped_column(QTY)  # ordered
    received_qty: Mapped[Decimal] = mapped_column(QTY, default=Decimal(0))
    unit_price: Mapped[Decimal] = mapped_column(MONEY)
    tax_rate: Mapped[Decimal] = mapped_column(RATE)
    net: Mapped[Decimal] = mapped_column(MONEY)
    tax: Mapped[Decimal] = mapped_column(MONEY)

    @property
    def open_qty(self) -> Decimal:
        return self.qty - self.received_qty


class GoodsReceipt(Model):
    __tablename__ = "goods_receipt"
    id: Mapped[int] = mapped_column(primary_key=True)
    number: Mapped[str] = mapped_column(String(40), unique=True)
    order_id: Mapped[int] = mapped_column(ForeignKey("purchase_order.id"), index=True)
    delivery_note: Mapped[str] = mapped_column(String(100), default="")
    received_on: Mapped[date] = mapped_column(Date)
    received_by: Mapped[str] = mapped_column(String(80))
    complete: Mapped[bool] = mapped_column(Boolean, default=False)  # the order was complete after it
    instance_id: Mapped[int | None] = mapped_column(Integer, index=True)
    source_key: Mapped[str | None] = mapped_column(String(200), unique=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    lines: Mapped[list[GoodsReceiptLine]] = relationship(
        cascade="all, delete-orphan", order_by="GoodsReceiptLine.id", lazy="selectin"
    )


class GoodsReceiptLine(Model):
    __tablename__ = "goods_receipt_line"
    id: Mapped[int] = mapped_column(primary_key=True)
    receipt_id: Mapped[int] = mapped_column(ForeignKey("goods_receipt.id"), index=True)
    order_line_id: Mapped[int] = mapped_column(ForeignKey("purchase_order_line.id"), index=True)
    product: Mapped[str] = mapped_column(String(60))
    qty: Mapped[Decimal] = mapped_column(QTY)


class VendorBill(Model):
    __tablename__ = "vendor_bill"
    id: Mapped[int] = mapped_column(primary_key=True)
    number: Mapped[str] = mapped_column(String(40), unique=True)  # ours: VB-2026-0001
    vendor_bill_number: Mapped[str] = mapped_column(String(100), index=True)  # the vendor's
    vendor_id: Mapped[int] = mapped_column(ForeignKey("vendor.id"), index=True)
    order_id: Mapped[int] = mapped_column(ForeignKey("purchase_order.id"), index=True)
    bill_date: Mapped[date] = mapped_column(Date)
    due_date: Mapped[date] = mapped_column(Date)
    currency: Mapped[str] = mapped_column(String(3))
    total_net: Mapped[Decimal] = mapped_column(MONEY)
    total_tax: Mapped[Decimal] = mapped_column(MONEY)
    total: Mapped[Decimal] = mapped_column(MONEY)
    matched: Mapped[bool] = mapped_column(Boolean)
    differences: Mapped[list[Any]] = mapped_column(JSON, default=list)
    # matched, mismatch, superseded (a corrected bill replaced it), scheduled (payment planned)
    status: Mapped[str] = mapped_column(String(20), index=True)
    payment_date: Mapped[date | None] = mapped_column(Date)
    resolution_note: Mapped[str | None] = mapped_column(Text)
    instance_id: Mapped[int | None] = mapped_column(Integer, index=True)
    source_key: Mapped[str | None] = mapped_column(String(200), unique=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    lines: Mapped[list[VendorBillLine]] = relationship(
        cascade="all, delete-orphan", order_by="VendorBillLine.position", lazy="selectin"
    )


class VendorBillLine(Model):
    __tablename__ = "vendor_bill_line"
    id: Mapped[int] = mapped_column(primary_key=True)
    bill_id: Mapped[int] = mapped_column(ForeignKey("vendor_bill.id"), index=True)
    position: Mapped[int] = mapped_column(Integer)
    product_id: Mapped[int] = mapped_column(ForeignKey("product.id"))
    product: Mapped[str] = mapped_column(String(60))
    qty: Mapped[Decimal] = mapped_column(QTY)
    unit_price: Mapped[Decimal] = mapped_column(MONEY)
    tax_rate: Mapped[Decimal] = mapped_column(RATE)
    net: Mapped[Decimal] = mapped_column(MONEY)
    tax: Mapped[Decimal] = mapped_column(MONEY)


def request_by_number(number: str) -> PurchaseRequest:
    found: PurchaseRequest = document_by_number(PurchaseRequest, number)
    return found


def order_by_number(number: str) -> PurchaseOrder:
    found: PurchaseOrder = document_by_number(PurchaseOrder, number)
    return found


def bill_by_number(number: str) -> VendorBill:
    found: VendorBill = document_by_number(VendorBill, number)
    return found


# -- input ---------------------------------------------------------------------------------------------
def _text(value: Any) -> str:
    return "" if value is None else str(value).strip()


def _aware(value: datetime) -> datetime:
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def _actor(ctx: OperationContext, *tasks: str) -> str:
    """Who made this change: the engine's actor, or, while the engine reports only "system",
    the user who completed the task that led here (or who started the instance)."""
    if ctx.actor and ctx.actor != "system":
        return ctx.actor
    completed_by = ctx.data.get("completed_by") or {}
    for task in tasks:
        if completed_by.get(task):
            return str(completed_by[task])
    return str(ctx.data.get("started_by") or ctx.actor or "system")


@dataclass(frozen=True)
class _Line:
    product: Product
    qty: Decimal
    unit_price: Decimal
    tax_rate: Decimal


def _lines(
    value: Any, field: str, *, priced: bool = True, taxed: bool = False, require: bool = True
) -> tuple[list[_Line], list[FieldError]]:
    """Parse `{product, qty[, unit_price][, tax_rate]}` lines; every problem names its field."""
    if not isinstance(value, list) or (require and not value):
        return [], [FieldError(field, "at least one line is required")]
    lines: list[_Line] = []
    problems: list[FieldError] = []
    for i, raw in enumerate(value):
        where = f"{field}/{i}"
        if not isinstance(raw, dict):
            problems.append(FieldError(where, "must be a line with product and qty"))
            continue
        before = len(problems)
        product = qty = None
        price = rate = Decimal(0)
        try:
            product = product_by_code(_text(raw.get("product")), f"{where}/product")
        except InvalidData as exc:
            problems.extend(exc.errors)
        try:
            qty = to_decimal(raw.get("qty"), f"{where}/qty")
            if qty <= 0:
                problems.append(FieldError(f"{where}/qty", f"must be more than 0, got {qty}"))
        except InvalidData as exc:
            problems.extend(exc.errors)
        try:
            if priced:
                price = to_decimal(raw.get("unit_price"), f"{where}/unit_price", minimum=Decimal(0))
            if taxed:
                rate = to_decimal(
                    raw.get("tax_rate"), f"{where}/tax_rate", minimum=Decimal(0), maximum=Decimal(100)
                )
        except InvalidData as exc:
            problems.extend(exc.errors)
        if len(problems) == before and product is not None and qty is not None:
            lines.append(_Line(product, qty, price, rate))
    return lines, problems


def _day(value: Any, field: str, problems: list[FieldError]) -> date | None:
    try:
        return parse_day(value, field)
    except InvalidData as exc:
        problems.extend(exc.errors)
        return None


def _qty_text(qty: Decimal) -> str:
    text = format(qty.normalize(), "f")
    return text


def _digest(*parts: Any) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:32]


# -- purchase requests ------------------------------------------------------------------------------
def _request_result(request: PurchaseRequest) -> dict[str, Any]:
    return {
        "number": request.number,
        "amount": money_text(request.amount),
        "currency": request.currency,
        "requested_by": request.requested_by,
        "status": request.status,
        "revision": request.revision,
        "needed_by": request.needed_by.isoformat(),
    }


def _request_lines(lines: list[_Line]) -> tuple[list[PurchaseRequestLine], Decimal]:
    rows = []
    for position, line in enumerate(lines, start=1):
        amount = money(line.qty * line.unit_price)
        rows.append(
            PurchaseRequestLine(
                position=position,
                product_id=line.product.id,
                product=line.product.code,
                description=line.product.name,
                qty=line.qty,
                unit_price=line.unit_price,
                amount=amount,
            )
        )
    return rows, sum((r.amount for r in rows), Decimal(0))


def _plain_request_lines(request: PurchaseRequest) -> list[dict[str, str]]:
    return [
        {"product": r.product, "qty": _qty_text(r.qty), "unit_price": money_text(r.unit_price) or ""}
        for r in request.lines
    ]


def _request_input(
    lines: Any, reason: Any, needed_by: Any
) -> tuple[list[_Line], date | None, list[FieldError]]:
    parsed, problems = _lines(lines, "lines")
    if not _text(reason):
        problems.append(FieldError("reason", "say why this purchase is needed"))
    when = _day(needed_by, "needed_by", problems)
    return parsed, when, problems


@operation("create_purchase_request")
def create_purchase_request(
    ctx: OperationContext,
    lines: list[dict[str, Any]],
    suggested_vendor: str | None,
    reason: str,
    needed_by: str,
    requested_by: str,
) -> dict[str, Any]:
    """Create the request with its lines; amount = sum of qty * unit price; status `submitted`."""
    key = None
    if ctx.instance_id:
        delivery = ctx.data.get("parts_delivery")
        key = _digest(ctx.instance_id, ctx.task_spec_id, lines, suggested_vendor, reason, needed_by, delivery)
        existing = db.session.scalar(select(PurchaseRequest).where(PurchaseRequest.source_key == key))
        if existing is not None:  # a retry of this very step
            return _request_result(existing)
    parsed, when, problems = _request_input(lines, reason, needed_by)
    if not _text(requested_by):
        problems.append(FieldError("requested_by", "who asks for this purchase?"))
    if problems:
        raise InvalidData(problems)
    assert when is not None
    rows, amount = _request_lines(parsed)
    request = PurchaseRequest(
        number=next_number("PR", ctx.now),
        requested_by=_text(requested_by),
        reason=_text(reason),
        suggested_vendor=_text(suggested_vendor),
        needed_by=when,
        currency=DEFAULT_CURRENCY,
        amount=amount,
        status="submitted",
        revision=1,
        instance_id=ctx.instance_id or None,
        source_key=key,
        created_at=ctx.now,
        updated_at=ctx.now,
        lines=rows,
    )
    db.session.add(request)
    record_event(
        "purchase_request",
        request,
        "submitted",
        actor=_actor(ctx, "issue_parts"),
        at=ctx.now,
        instance_id=ctx.instance_id,
        lines=_plain_request_lines(request),
        amount=request.amount,
        reason=request.reason,
        needed_by=request.needed_by,
        suggested_vendor=request.suggested_vendor,
    )
    return _request_result(request)


def _last_decision(ctx: OperationContext, request: PurchaseRequest) -> tuple[str | None, str | None]:
    """(who, level) of the latest approval task completed for this request in this instance."""
    row = db.session.execute(
        select(HumanTask.completed_by, HumanTask.spec_id)
        .where(
            HumanTask.instance_id == ctx.instance_id,
            HumanTask.spec_id.in_(list(APPROVAL_TASKS)),
            HumanTask.document_key == request.number,
            HumanTask.status == "completed",
        )
        .order_by(HumanTask.completed_at.desc(), HumanTask.id.desc())
        .limit(1)
    ).first()
    if row is None:
        return None, None
    return row.completed_by, APPROVAL_TASKS.get(row.spec_id)


def _record_rejection(ctx: OperationContext, request: PurchaseRequest, reason: str) -> None:
    who, level = _last_decision(ctx, request)
    request.status = "rejected"
    request.decided_by, request.decided_at = who, ctx.now
    record_event(
        "purchase_request",
        request,
        "rejected",
        actor=who or _actor(ctx, "approve_director", "approve_manager"),
        at=ctx.now,
        instance_id=ctx.instance_id,
        reason=reason,
        level=level,
        revision=request.revision,
    )


@operation("update_purchase_request")
def update_purchase_request(
    ctx: OperationContext,
    number: str,
    lines: list[dict[str, Any]],
    suggested_vendor: str | None,
    reason: str,
    needed_by: str,
    comment: str | None = None,
) -> dict[str, Any]:
    """Replace the lines and fields of a rejected request (the old ones stay in its history),
    recompute the amount and submit it again as the next revision."""
    request = request_by_number(number)
    known = (ctx.data.get("purchase_request") or {}).get("revision")
    if known is not None and request.revision > int(known) and request.status == "submitted":
        return _request_result(request)  # a retry: this revision is already submitted
    if request.status not in ("submitted", "rejected"):
        raise InvalidState(f"purchase request {request.number} is {request.status}; it cannot be revised")
    parsed, when, problems = _request_input(lines, reason, needed_by)
    if problems:
        raise InvalidData(problems)
    assert when is not None
    if request.status == "submitted" and ctx.data.get("decision") == "reject":
        _record_rejection(ctx, request, _text(ctx.data.get("reason")))
    before = {"lines": _plain_request_lines(request), "amount": money_text(request.amount)}
    rows, amount = _request_lines(parsed)
    request.lines = rows
    request.amount = amount
    request.reason = _text(reason)
    request.suggested_vendor = _text(suggested_vendor)
    request.needed_by = when
    request.revision += 1
    request.status = "submitted"
    request.decided_by = request.decided_at = None
    request.updated_at = ctx.now
    record_event(
        "purchase_request",
        request,
        "revised",
        actor=_actor(ctx, "revise_request"),
        at=ctx.now,
        instance_id=ctx.instance_id,
        revision=request.revision,
        comment=_text(comment),
        before=before,
        lines=_plain_request_lines(request),
        amount=request.amount,
        reason=request.reason,
        needed_by=request.needed_by,
    )
    return _request_result(request)


_REQUEST_MOVES = {
    "approved": ("submitted",),
    "rejected": ("submitted",),
    "withdrawn": ("submitted", "rejected", "approved"),
    "submitted": ("rejected",),
}


@status_setter("purchase_request")
def set_request_status(number: str, status: str, reason: str | None, ctx: OperationContext) -> dict[str, Any]:
    """Approve, reject or withdraw a request with a reason; the approvers and their comments
    (from the process's approval tasks) go into the request's history."""
    if status not in REQUEST_STATUSES:
        raise InvalidData([FieldError("status", f"{status!r} is not a purchase request status")])
    request = request_by_number(number)
    if request.status == status:
        return {**_request_result(request), "status": status}
    if request.status not in _REQUEST_MOVES.get(status, ()):
        raise InvalidState(
            f"purchase request {request.number} is {request.status}; it cannot become {status}"
        )
    if status == "rejected":  # recorded when the approver decides: who (from the approval task), level, why
        _record_rejection(ctx, request, _text(reason))
        request.updated_at = ctx.now
        return {**_request_result(request), "status": status}
    if status == "withdrawn" and request.status == "submitted" and ctx.data.get("decision") == "reject":
        _record_rejection(ctx, request, _text(ctx.data.get("reason")))
    previous = request.status
    detail: dict[str, Any] = {"previous": previous, "reason": _text(reason)}
    if status == "approved":
        who: str | None
        level: str | None
        comment: str | None
        if ctx.data.get("approval_level", "auto") == "auto":  # below the approval limit: the rule decides
            who, level, comment = None, "auto", None
        else:
            who, level = _last_decision(ctx, request)
            comment = _text(ctx.data.get("reason")) or None
        detail.update(approved_by=who, level=level or "auto", comment=comment)
        request.decided_by, request.decided_at = who, ctx.now
        actor = who or "system"
    else:
        actor = _actor(ctx, "revise_request")
    request.status = status
    request.updated_at = ctx.now
    record_event(
        "purchase_request", request, status, actor=actor, at=ctx.now, instance_id=ctx.instance_id, **detail
    )
    return {**_request_result(request), "status": status}


# -- purchase orders ----------------------------------------------------------------------------------
def _end_of(day: date) -> datetime:
    return datetime.combine(day, time(23, 59, 59), UTC)


def _order_result(order: PurchaseOrder) -> dict[str, Any]:
    vendor = db.session.get(Vendor, order.vendor_id)
    return {
        "number": order.number,
        "vendor": vendor.name if vendor else None,
        "expected_date": order.expected_date.isoformat(),
        "delivery_due": _aware(order.delivery_due).isoformat(),
        "total": money_text(order.total),
        "currency": order.currency,
        "status": order.status,
    }


@operation("create_purchase_order")
def create_purchase_order(
    ctx: OperationContext,
    request_number: str,
    vendor: str,
    vendor_email: str,
    vendor_reference: str | None,
    rfq_summary: str | None,
    lines: list[dict[str, Any]],
    expected_date: str,
) -> dict[str, Any]:
    """Order the approved request from the chosen vendor and e-mail the order to them."""
    request = request_by_number(request_number)
    existing = db.session.scalar(
        select(PurchaseOrder).where(PurchaseOrder.request_id == request.id).order_by(PurchaseOrder.id)
    )
    if existing is not None and request.status == "ordered":
        return _order_result(existing)  # a retry: the order is already out
    if request.status != "approved":
        raise InvalidState(f"purchase request {request.number} is {request.status}, not approved")
    parsed, problems = _lines(lines, "lines", taxed=True)
    if not _text(vendor):
        problems.append(FieldError("vendor", "choose a vendor"))
    email = _text(vendor_email)
    if not is_valid_address(email):
        problems.append(FieldError("vendor_email", f"{email!r} is not an e-mail address"))
    expected = _day(expected_date, "expected_date", problems)
    if expected is not None and expected < ctx.now.date():
        problems.append(FieldError("expected_date", f"{expected} lies in the past"))
    if problems:
        raise InvalidData(problems)
    assert expected is not None
    supplier = find_or_create_vendor(vendor, email)
    rows = []
    for position, line in enumerate(parsed, start=1):
        amounts = line_amounts(line.qty, line.unit_price, tax_rate=line.tax_rate)
        rows.append(
            PurchaseOrderLine(
                position=position,
                product_id=line.product.id,
                product=line.product.code,
                description=line.product.name,
                qty=line.qty,
                received_qty=Decimal(0),
                unit_price=line.unit_price,
                tax_rate=line.tax_rate,
                net=amounts.net,
                tax=amounts.tax,
            )
        )
    net = sum((r.net for r in rows), Decimal(0))
    tax = sum((r.tax for r in rows), Decimal(0))
    order = PurchaseOrder(
        number=next_number("PO", ctx.now),
        request_id=request.id,
        vendor_id=supplier.id,
        vendor_email=email,
        vendor_reference=_text(vendor_reference),
        rfq_summary=_text(rfq_summary),
        currency=request.currency if request.currency in CURRENCIES else DEFAULT_CURRENCY,
        total_net=net,
        total_tax=tax,
        total=net + tax,
        expected_date=expected,
        delivery_due=_end_of(expected),
        status="open",
        instance_id=ctx.instance_id or None,
        created_at=ctx.now,
        updated_at=ctx.now,
        lines=rows,
    )
    db.session.add(order)
    who = _actor(ctx, "select_vendor")
    record_event(
        "purchase_order",
        order,
        "issued",
        actor=who,
        at=ctx.now,
        instance_id=ctx.instance_id,
        request=request.number,
        vendor=supplier.name,
        vendor_email=email,
        vendor_reference=order.vendor_reference,
        rfq_summary=order.rfq_summary,
        expected_date=expected,
        total=order.total,
    )
    request.status = "ordered"
    request.updated_at = ctx.now
    record_event(
        "purchase_request",
        request,
        "ordered",
        actor=who,
        at=ctx.now,
        instance_id=ctx.instance_id,
        purchase_order=order.number,
        vendor=supplier.name,
    )
    queue_mail(
        email,
        f"Purchase order {order.number}",
        _order_mail(order, supplier),
        now=ctx.now,
        kind="purchase_order",
        dedupe_key=f"purchase_order:{order.number}",
        instance_id=ctx.instance_id or None,
    )
    return _order_result(order)


def _order_mail(order: PurchaseOrder, vendor: Vendor) -> str:
    rows = "\n".join(
        f"{line.position}. {line.product} {line.description}: {_qty_text(line.qty)} x "
        f"{money_text(line.unit_price)} {order.currency} (tax {_qty_text(line.tax_rate)} %) = "
        f"{money_text(line.net)}"
        for line in order.lines
    )
    reference = f"\nYour quote: {order.vendor_reference}" if order.vendor_reference else ""
    return (
        f"Dear {vendor.name},\n\nplease deliver the following under our purchase order {order.number}."
        f"{reference}\n\n{rows}\n\nNet {money_text(order.total_net)}, tax {money_text(order.total_tax)}, "
        f"total {money_text(order.total)} {order.currency}.\n"
        f"Delivery expected by {order.expected_date.isoformat()}. Please quote {order.number} on your "
        "delivery note and bill.\n"
    )


@operation("reschedule_delivery")
def reschedule_delivery(
    ctx: OperationContext, purchase_order_number: str, expected_date: str, note: str | None = None
) -> dict[str, Any]:
    """Store the vendor's new promised delivery date and what they said."""
    order = order_by_number(purchase_order_number)
    problems: list[FieldError] = []
    expected = _day(expected_date, "expected_date", problems)
    if expected is not None and expected < ctx.now.date():
        problems.append(FieldError("expected_date", f"{expected} lies in the past"))
    if problems:
        raise InvalidData(problems)
    assert expected is not None
    if order.status in ("received", "billed"):
        raise InvalidState(f"purchase order {order.number} is already {order.status}")
    previous = order.expected_date
    if previous != expected or order.vendor_note != _text(note):
        order.expected_date, order.delivery_due = expected, _end_of(expected)
        order.vendor_note = _text(note)
        order.updated_at = ctx.now
        record_event(
            "purchase_order",
            order,
            "rescheduled",
            actor=_actor(ctx, "chase_vendor"),
            at=ctx.now,
            instance_id=ctx.instance_id,
            previous_expected_date=previous,
            expected_date=expected,
            note=order.vendor_note,
        )
    return _order_result(order)


# -- goods receipts ----------------------------------------------------------------------------------
@operation("record_goods_receipt")
def record_goods_receipt(
    ctx: OperationContext,
    purchase_order_number: str,
    lines: list[dict[str, Any]],
    delivery_note: str | None,
    received_on: str,
) -> dict[str, Any]:
    """Book what arrived: a GoodsReceipt, stock in, less open on the order. Receiving more than
    is open on the order is refused, naming the line."""
    order = order_by_number(purchase_order_number)
    key = None
    if ctx.instance_id:
        previous = (ctx.data.get("receipt") or {}).get("number")
        key = f"{ctx.instance_id}/{ctx.task_spec_id}/{order.number}/after/{previous or '-'}"
        done = db.session.scalar(select(GoodsReceipt).where(GoodsReceipt.source_key == key))
        if done is not None:  # a retry of this very step
            return _receipt_result(done, order)
    if order.status in ("received", "billed"):
        raise InvalidState(f"purchase order {order.number} is already fully received")
    parsed, problems = _lines(lines, "lines", priced=False)
    day = _day(received_on, "received_on", problems)
    if day is not None and day > ctx.now.date():
        problems.append(FieldError("received_on", f"{day} lies in the future"))
    allocations: list[tuple[int, PurchaseOrderLine, Decimal]] = []
    open_left = {line.id: line.open_qty for line in order.lines}
    for i, line in enumerate(parsed):
        candidates = [o for o in order.lines if o.product_id == line.product.id]
        if not candidates:
            problems.append(
                FieldError(
                    f"lines/{i}/product", f"{line.product.code} is not on purchase order {order.number}"
                )
            )
            continue
        available = sum((open_left[o.id] for o in candidates), Decimal(0))
        if line.qty > available:
            ordered = sum((o.qty for o in candidates), Decimal(0))
            received = ordered - sum((o.open_qty for o in candidates), Decimal(0))
            problems.append(
                FieldError(
                    f"lines/{i}/qty",
                    f"{line.product.code}: receiving {_qty_text(line.qty)} is more than is open on "
                    f"{order.number} line {candidates[0].position} (ordered {_qty_text(ordered)}, "
                    f"received {_qty_text(received)}, open {_qty_text(available)})",
                )
            )
            continue
        rest = line.qty
        for candidate in candidates:
            take = min(rest, open_left[candidate.id])
            if take > 0:
                allocations.append((i, candidate, take))
                open_left[candidate.id] -= take
                rest -= take
    if problems:
        raise InvalidData(problems)
    assert day is not None
    receipt = GoodsReceipt(
        number=next_number("GR", ctx.now),
        order_id=order.id,
        delivery_note=_text(delivery_note),
        received_on=day,
        received_by=_actor(ctx, "receive_goods"),
        instance_id=ctx.instance_id or None,
        source_key=key,
        created_at=ctx.now,
        lines=[GoodsReceiptLine(order_line_id=o.id, product=o.product, qty=q) for _, o, q in allocations],
    )
    db.session.add(receipt)
    for _, order_line, qty in allocations:
        order_line.received_qty = order_line.received_qty + qty
        db.session.execute(
            update(Product)
            .where(Product.id == order_line.product_id)
            .values(stock=Product.stock + qty)
            .execution_options(synchronize_session=False)
        )
    for product in {o.product_id for _, o, _ in allocations}:
        loaded = db.session.get(Product, product)
        if loaded is not None:
            db.session.expire(loaded, ["stock"])
    complete = all(o.received_qty >= o.qty for o in order.lines)
    receipt.complete = complete
    order.status = "received" if complete else "partially_received"
    order.updated_at = ctx.now
    booked = [{"product": o.product, "qty": _qty_text(q)} for _, o, q in allocations]
    record_event(
        "goods_receipt",
        receipt,
        "received",
        actor=receipt.received_by,
        at=ctx.now,
        instance_id=ctx.instance_id,
        purchase_order=order.number,
        delivery_note=receipt.delivery_note,
        received_on=day,
        lines=booked,
    )
    record_event(
        "purchase_order",
        order,
        "goods_received",
        actor=receipt.received_by,
        at=ctx.now,
        instance_id=ctx.instance_id,
        receipt=receipt.number,
        lines=booked,
        complete=complete,
    )
    return _receipt_result(receipt, order)


def _receipt_result(receipt: GoodsReceipt, order: PurchaseOrder) -> dict[str, Any]:
    return {
        "number": receipt.number,
        "purchase_order": order.number,
        "complete": all(o.received_qty >= o.qty for o in order.lines),
        "open_lines": [
            {"product": o.product, "qty": _qty_text(o.open_qty)} for o in order.lines if o.open_qty > 0
        ],
    }


# -- vendor bills and the three-way match ------------------------------------------------------------
@operation("match_vendor_bill")
def match_vendor_bill(
    ctx: OperationContext,
    purchase_order_number: str,
    bill_number: str,
    bill_date: str,
    due_date: str,
    lines: list[dict[str, Any]],
) -> dict[str, Any]:
    """Enter the vendor's bill and match it with the order and the goods received: for every
    product billed qty ≤ received qty and unit price = ordered price (± PRICE_TOLERANCE), and
    the bill's total = the billed quantities at the ordered prices and tax rates."""
    order = order_by_number(purchase_order_number)
    key = None
    if ctx.instance_id:
        previous = (ctx.data.get("bill") or {}).get("number")
        key = f"{ctx.instance_id}/{ctx.task_spec_id}/{order.number}/after/{previous or '-'}"
        done = db.session.scalar(select(VendorBill).where(VendorBill.source_key == key))
        if done is not None:  # a retry of this very step
            return _bill_result(done)
    parsed, problems = _lines(lines, "lines", taxed=True)
    vendor_number = _text(bill_number)
    if not vendor_number:
        problems.append(FieldError("bill_number", "the vendor's bill number is required"))
    billed_on = _day(bill_date, "bill_date", problems)
    due_on = _day(due_date, "due_date", problems)
    if billed_on and due_on and due_on < billed_on:
        problems.append(FieldError("due_date", f"{due_on} is before the bill date {billed_on}"))
    earlier = list(
        db.session.scalars(
            select(VendorBill).where(VendorBill.order_id == order.id, VendorBill.status != "superseded")
        )
    )
    duplicate = db.session.scalar(
        select(VendorBill).where(
            VendorBill.vendor_id == order.vendor_id,
            VendorBill.vendor_bill_number == vendor_number,
            VendorBill.status != "superseded",
        )
    )
    if duplicate is not None and (duplicate.order_id != order.id or duplicate.status == "scheduled"):
        problems.append(
            FieldError(
                "bill_number", f"bill {vendor_number} of this vendor is already entered as {duplicate.number}"
            )
        )
    if problems:
        raise InvalidData(problems)
    assert billed_on is not None and due_on is not None
    # a new bill for an order whose earlier bill did not match replaces it (corrected bill)
    replaced = [b for b in earlier if b.status == "mismatch"]
    already_billed = [b for b in earlier if b.status in ("matched", "scheduled")]
    rows = []
    for position, line in enumerate(parsed, start=1):
        amounts = line_amounts(line.qty, line.unit_price, tax_rate=line.tax_rate)
        rows.append(
            VendorBillLine(
                position=position,
                product_id=line.product.id,
                product=line.product.code,
                qty=line.qty,
                unit_price=line.unit_price,
                tax_rate=line.tax_rate,
                net=amounts.net,
                tax=amounts.tax,
            )
        )
    differences = three_way_differences(order, rows, already_billed)
    net = sum((r.net for r in rows), Decimal(0))
    tax = sum((r.tax for r in rows), Decimal(0))
    bill = VendorBill(
        number=next_number("VB", ctx.now),
        vendor_bill_number=vendor_number,
        vendor_id=order.vendor_id,
        order_id=order.id,
        bill_date=billed_on,
        due_date=due_on,
        currency=order.currency,
        total_net=net,
        total_tax=tax,
        total=net + tax,
        matched=not differences,
        differences=differences,
        status="mismatch" if differences else "matched",
        instance_id=ctx.instance_id or None,
        source_key=key,
        created_at=ctx.now,
        updated_at=ctx.now,
        lines=rows,
    )
    db.session.add(bill)
    who = _actor(ctx, "enter_vendor_bill")
    for old in replaced:
        old.status, old.updated_at = "superseded", ctx.now
        record_event(
            "vendor_bill",
            old,
            "superseded",
            actor=who,
            at=ctx.now,
            instance_id=ctx.instance_id,
            by=bill.number,
        )
    record_event(
        "vendor_bill",
        bill,
        "entered",
        actor=who,
        at=ctx.now,
        instance_id=ctx.instance_id,
        purchase_order=order.number,
        vendor_bill_number=vendor_number,
        total=bill.total,
        matched=bill.matched,
        differences=differences,
        replaces=[b.number for b in replaced],
    )
    return _bill_result(bill)


def three_way_differences(
    order: PurchaseOrder, bill_lines: Sequence[VendorBillLine], earlier_bills: Sequence[VendorBill] = ()
) -> list[str]:
    """The differences between a bill and its order and receipts, in plain words (empty: matched)."""
    differences: list[str] = []
    by_product: dict[int, list[PurchaseOrderLine]] = {}
    for ordered_line in order.lines:
        by_product.setdefault(ordered_line.product_id, []).append(ordered_line)
    billed_before: dict[int, Decimal] = {}
    for earlier in earlier_bills:
        for old in earlier.lines:
            billed_before[old.product_id] = billed_before.get(old.product_id, Decimal(0)) + old.qty
    billed_now: dict[int, Decimal] = {}
    expected_net = expected_tax = Decimal(0)
    for line in bill_lines:
        ordered_lines = by_product.get(line.product_id)
        label = f"{line.product} (bill line {line.position})"
        if not ordered_lines:
            differences.append(f"{label}: not on purchase order {order.number}")
            continue
        billed_now[line.product_id] = billed_now.get(line.product_id, Decimal(0)) + line.qty
        ordered = ordered_lines[0]
        if abs(line.unit_price - ordered.unit_price) > PRICE_TOLERANCE:
            differences.append(
                f"{label}: billed at {money_text(line.unit_price)}, ordered at "
                f"{money_text(ordered.unit_price)} {order.currency}"
            )
        if line.tax_rate != ordered.tax_rate:
            differences.append(
                f"{label}: billed with {_qty_text(line.tax_rate)} % tax, ordered with "
                f"{_qty_text(ordered.tax_rate)} %"
            )
        expected = line_amounts(line.qty, ordered.unit_price, tax_rate=ordered.tax_rate)
        expected_net += expected.net
        expected_tax += expected.tax
    for product_id, qty in billed_now.items():
        lines = by_product[product_id]
        received = sum((o.received_qty for o in lines), Decimal(0))
        before = billed_before.get(product_id, Decimal(0))
        if before + qty > received:
            also = f" (plus {_qty_text(before)} billed earlier)" if before else ""
            differences.append(
                f"{lines[0].product}: billed {_qty_text(qty)}{also}, but only {_qty_text(received)} received"
            )
    billed_total = sum((line.net + line.tax for line in bill_lines), Decimal(0))
    expected_total = expected_net + expected_tax
    if all(line.product_id in by_product for line in bill_lines) and (
        abs(billed_total - expected_total) > PRICE_TOLERANCE
    ):
        differences.append(
            f"Total: billed {money_text(billed_total)} {order.currency}, the order's prices give "
            f"{money_text(expected_total)} {order.currency}"
        )
    return differences


def _bill_result(bill: VendorBill) -> dict[str, Any]:
    return {
        "number": bill.number,
        "vendor_bill_number": bill.vendor_bill_number,
        "matched": bill.matched,
        "differences": list(bill.differences),
        "total": money_text(bill.total),
        "currency": bill.currency,
        "due_date": bill.due_date.isoformat(),
        "status": bill.status,
    }


@operation("schedule_vendor_payment")
def schedule_vendor_payment(ctx: OperationContext, bill_number: str) -> dict[str, Any]:
    """Approve the bill and put it in the payment run of its due date (today if already due)."""
    bill = bill_by_number(bill_number)
    if bill.status == "scheduled":
        return {
            **_bill_result(bill),
            "payment_date": bill.payment_date.isoformat() if bill.payment_date else None,
        }
    if bill.status not in ("matched", "mismatch"):
        raise InvalidState(f"vendor bill {bill.number} is {bill.status}; its payment cannot be scheduled")
    who = _actor(ctx, "resolve_bill_mismatch", "enter_vendor_bill")
    if bill.status == "mismatch":
        note = _text(ctx.data.get("resolution_note"))
        bill.resolution_note = note or None
        record_event(
            "vendor_bill",
            bill,
            "difference_accepted",
            actor=who,
            at=ctx.now,
            instance_id=ctx.instance_id,
            differences=list(bill.differences),
            note=note,
        )
    bill.payment_date = max(bill.due_date, ctx.now.date())
    bill.status = "scheduled"
    bill.updated_at = ctx.now
    record_event(
        "vendor_bill",
        bill,
        "payment_scheduled",
        actor=who,
        at=ctx.now,
        instance_id=ctx.instance_id,
        payment_date=bill.payment_date,
        amount=bill.total,
    )
    order = db.session.get(PurchaseOrder, bill.order_id)
    if order is not None and order.status == "received":
        order.status, order.updated_at = "billed", ctx.now
        record_event(
            "purchase_order",
            order,
            "billed",
            actor=who,
            at=ctx.now,
            instance_id=ctx.instance_id,
            bill=bill.number,
        )
    return {**_bill_result(bill), "payment_date": bill.payment_date.isoformat()}


# -- reports ------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class OpenApproval:
    number: str
    amount: Decimal
    currency: str
    requested_by: str
    level: str  # manager or director: whose decision is awaited
    task_id: int
    waiting_since: datetime
    age: timedelta
    due_at: datetime | None
    overdue: bool

    @property
    def age_days(self) -> int:
        return self.age.days


def open_approvals(now: datetime) -> list[OpenApproval]:
    """Purchase requests waiting for an approver's decision, oldest first, with their age: the
    open approval tasks of `purchase_approval` (their document key is the request number)."""
    rows = db.session.execute(
        select(HumanTask, PurchaseRequest)
        .join(PurchaseRequest, PurchaseRequest.number == HumanTask.document_key)
        .where(
            HumanTask.process_id == "purchase_approval",
            HumanTask.spec_id.in_(list(APPROVAL_TASKS)),
            HumanTask.status.in_(OPEN_TASK_STATES),
            HumanTask.document_type == "purchase_request",
        )
        .order_by(HumanTask.created_at, HumanTask.id)
    ).all()
    return [
        OpenApproval(
            number=request.number,
            amount=request.amount,
            currency=request.currency,
            requested_by=request.requested_by,
            level=APPROVAL_TASKS[task.spec_id],
            task_id=task.id,
            waiting_since=_aware(task.created_at),
            age=now - _aware(task.created_at),
            due_at=_aware(task.due_at) if task.due_at else None,
            overdue=task.due_at is not None and _aware(task.due_at) < now,
        )
        for task, request in rows
    ]
