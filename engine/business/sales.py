"""Sales documents from lead to payment: leads, quotes, sales orders, deliveries, invoices and
payments, the operations the `lead_to_invoice` process calls on them, the `set_status`
operation every process uses, and the read-only queries behind the sales reports.

Every operation validates its input before it writes (a refusal is `InvalidData` naming the
field), writes the document's history with `record_event`, and links the document to the
process instance. Writing operations are idempotent where a retry could otherwise book twice:
one lead per instance, one order per quote, one e-mail per quote revision, invoice, and
dunning level, one payment per bank reference.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    Date,
    DateTime,
    ForeignKey,
    Integer,
    String,
    Text,
    UniqueConstraint,
    func,
    select,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from ..db import db
from ..errors import FieldError, InvalidData
from ..models import HumanTask, User, UserRole
from ..operations import OperationContext, operation
from .common import (
    CENT,
    CURRENCIES,
    MONEY,
    QTY,
    RATE,
    STATUS_SETTERS,
    Contact,
    Customer,
    Model,
    Product,
    find_or_create_customer,
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
from .mail import OutboxMail, queue_mail

ZERO = Decimal(0)
HUNDRED = Decimal(100)
LEAD_SOURCES = ("web_form", "event", "phone_call", "referral", "campaign", "other")
PAYMENT_TERMS = (14, 30)
INVOICE_KINDS = ("goods", "repair", "diagnosis_fee")
COLLECTION_ACTIONS = ("stop_deliveries", "payment_plan", "collection_agency", "write_off")
OPEN_INVOICE_STATES = ("open", "handed_over")
DISCOUNT_TASKS = ("approve_discount", "approve_discount_director")
AGING_BUCKETS = ("current", "1-30", "31-60", "61-90", ">90")


# -- documents ---------------------------------------------------------------------------------
class Lead(Model):
    """A prospect someone captured; `open` until it is quoted (`qualified`), won (`converted`),
    or closed as `unqualified` or `cold`."""

    __tablename__ = "lead"
    id: Mapped[int] = mapped_column(primary_key=True)
    number: Mapped[str] = mapped_column(String(40), unique=True)
    instance_id: Mapped[int | None] = mapped_column(Integer, index=True)
    status: Mapped[str] = mapped_column(String(20), default="open")
    status_reason: Mapped[str | None] = mapped_column(Text)
    customer_id: Mapped[int] = mapped_column(ForeignKey("customer.id"), index=True)
    contact_id: Mapped[int | None] = mapped_column(ForeignKey("contact.id"))
    source: Mapped[str] = mapped_column(String(20))
    interest: Mapped[str] = mapped_column(Text, default="")
    estimated_value: Mapped[Decimal | None] = mapped_column(MONEY)
    owner: Mapped[str | None] = mapped_column(String(80), index=True)
    captured_by: Mapped[str] = mapped_column(String(80))
    last_contact_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    customer: Mapped[Customer] = relationship()
    contact: Mapped[Contact | None] = relationship()
    contact_log: Mapped[list[LeadContactLog]] = relationship(
        back_populates="lead", order_by="LeadContactLog.id", cascade="all, delete-orphan"
    )


class LeadContactLog(Model):
    __tablename__ = "lead_contact_log"
    id: Mapped[int] = mapped_column(primary_key=True)
    lead_id: Mapped[int] = mapped_column(ForeignKey("lead.id"), index=True)
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    actor: Mapped[str] = mapped_column(String(80))
    note: Mapped[str] = mapped_column(Text)
    lead: Mapped[Lead] = relationship(back_populates="contact_log")


class Quote(Model):
    """An offer to a lead's customer. Revised in place after a rejected discount: the number
    stays, `revision` counts up and the earlier revisions' lines are kept."""

    __tablename__ = "quote"
    id: Mapped[int] = mapped_column(primary_key=True)
    number: Mapped[str] = mapped_column(String(40), unique=True)
    instance_id: Mapped[int | None] = mapped_column(Integer, index=True)
    status: Mapped[str] = mapped_column(String(20), default="draft")
    status_reason: Mapped[str | None] = mapped_column(Text)
    revision: Mapped[int] = mapped_column(Integer, default=1)
    lead_id: Mapped[int | None] = mapped_column(ForeignKey("lead.id"), index=True)
    customer_id: Mapped[int] = mapped_column(ForeignKey("customer.id"), index=True)
    contact_id: Mapped[int | None] = mapped_column(ForeignKey("contact.id"))
    author: Mapped[str] = mapped_column(String(80))
    currency: Mapped[str] = mapped_column(String(3))
    payment_terms_days: Mapped[int] = mapped_column(Integer)
    validity_days: Mapped[int] = mapped_column(Integer)
    valid_until: Mapped[date] = mapped_column(Date)
    notes: Mapped[str] = mapped_column(Text, default="")
    total_net: Mapped[Decimal] = mapped_column(MONEY, default=ZERO)
    total_tax: Mapped[Decimal] = mapped_column(MONEY, default=ZERO)
    total_gross: Mapped[Decimal] = mapped_column(MONEY, default=ZERO)
    max_discount_percent: Mapped[Decimal] = mapped_column(RATE, default=ZERO)
    sent_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    accepted_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    lead: Mapped[Lead | None] = relationship()
    customer: Mapped[Customer] = relationship()
    contact: Mapped[Contact | None] = relationship()
    all_lines: Mapped[list[QuoteLine]] = relationship(
        back_populates="quote",
        order_by="(QuoteLine.revision, QuoteLine.position)",
        cascade="all, delete-orphan",
    )

    @property
    def lines(self) -> list[QuoteLine]:
        """The lines of the current revision."""
        return [line for line in self.all_lines if line.revision == self.revision]


class QuoteLine(Model):
    __tablename__ = "quote_line"
    id: Mapped[int] = mapped_column(primary_key=True)
    quote_id: Mapped[int] = mapped_column(ForeignKey("quote.id"), index=True)
    revision: Mapped[int] = mapped_column(Integer, default=1)
    position: Mapped[int] = mapped_column(Integer)
    product: Mapped[str] = mapped_column(String(200))
    product_id: Mapped[int | None] = mapped_column(ForeignKey("product.id"))
    qty: Mapped[Decimal] = mapped_column(QTY)
    unit_price: Mapped[Decimal] = mapped_column(MONEY)
    discount_percent: Mapped[Decimal] = mapped_column(RATE, default=ZERO)
    tax_rate: Mapped[Decimal] = mapped_column(RATE, default=ZERO)
    net: Mapped[Decimal] = mapped_column(MONEY)
    tax: Mapped[Decimal] = mapped_column(MONEY)
    quote: Mapped[Quote] = relationship(back_populates="all_lines")


class SalesOrder(Model):
    """An accepted quote to deliver: `open`, `partially_delivered`, `delivered`, `invoiced`."""

    __tablename__ = "sales_order"
    id: Mapped[int] = mapped_column(primary_key=True)
    number: Mapped[str] = mapped_column(String(40), unique=True)
    instance_id: Mapped[int | None] = mapped_column(Integer, index=True)
    status: Mapped[str] = mapped_column(String(20), default="open")
    quote_id: Mapped[int | None] = mapped_column(ForeignKey("quote.id"), unique=True)
    customer_id: Mapped[int] = mapped_column(ForeignKey("customer.id"), index=True)
    contact_id: Mapped[int | None] = mapped_column(ForeignKey("contact.id"))
    currency: Mapped[str] = mapped_column(String(3))
    payment_terms_days: Mapped[int] = mapped_column(Integer)
    customer_reference: Mapped[str] = mapped_column(String(100), default="")
    requested_delivery_date: Mapped[date | None] = mapped_column(Date)
    delivery_address: Mapped[str] = mapped_column(Text, default="")
    notes: Mapped[str] = mapped_column(Text, default="")
    total_net: Mapped[Decimal] = mapped_column(MONEY, default=ZERO)
    total_tax: Mapped[Decimal] = mapped_column(MONEY, default=ZERO)
    total_gross: Mapped[Decimal] = mapped_column(MONEY, default=ZERO)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    quote: Mapped[Quote | None] = relationship()
    customer: Mapped[Customer] = relationship()
    contact: Mapped[Contact | None] = relationship()
    lines: Mapped[list[SalesOrderLine]] = relationship(
        back_populates="order", order_by="SalesOrderLine.position", cascade="all, delete-orphan"
    )


class SalesOrderLine(Model):
    __tablename__ = "sales_order_line"
    id: Mapped[int] = mapped_column(primary_key=True)
    order_id: Mapped[int] = mapped_column(ForeignKey("sales_order.id"), index=True)
    position: Mapped[int] = mapped_column(Integer)
    product: Mapped[str] = mapped_column(String(200))
    product_id: Mapped[int | None] = mapped_column(ForeignKey("product.id"))
    qty: Mapped[Decimal] = mapped_column(QTY)
    delivered_qty: Mapped[Decimal] = mapped_column(QTY, default=ZERO)
    invoiced_qty: Mapped[Decimal] = mapped_column(QTY, default=ZERO)
    unit_price: Mapped[Decimal] = mapped_column(MONEY)
    discount_percent: Mapped[Decimal] = mapped_column(RATE, default=ZERO)
    tax_rate: Mapped[Decimal] = mapped_column(RATE, default=ZERO)
    net: Mapped[Decimal] = mapped_column(MONEY)
    tax: Mapped[Decimal] = mapped_column(MONEY)
    order: Mapped[SalesOrder] = relationship(back_populates="lines")

    @property
    def open_qty(self) -> Decimal:
        return self.qty - self.delivered_qty


class Delivery(Model):
    __tablename__ = "delivery"
    id: Mapped[int] = mapped_column(primary_key=True)
    number: Mapped[str] = mapped_column(String(40), unique=True)
    instance_id: Mapped[int | None] = mapped_column(Integer, index=True)
    status: Mapped[str] = mapped_column(String(20), default="shipped")
    order_id: Mapped[int] = mapped_column(ForeignKey("sales_order.id"), index=True)
    carrier: Mapped[str] = mapped_column(String(100))
    tracking_number: Mapped[str] = mapped_column(String(100), default="")
    shipped_on: Mapped[date] = mapped_column(Date)
    # the process step that recorded it: a retried step finds its delivery instead of shipping twice
    task_id: Mapped[str | None] = mapped_column(String(36), unique=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    order: Mapped[SalesOrder] = relationship()
    lines: Mapped[list[DeliveryLine]] = relationship(
        back_populates="delivery", order_by="DeliveryLine.id", cascade="all, delete-orphan"
    )


class DeliveryLine(Model):
    __tablename__ = "delivery_line"
    id: Mapped[int] = mapped_column(primary_key=True)
    delivery_id: Mapped[int] = mapped_column(ForeignKey("delivery.id"), index=True)
    order_line_id: Mapped[int] = mapped_column(ForeignKey("sales_order_line.id"))
    product: Mapped[str] = mapped_column(String(200))
    qty: Mapped[Decimal] = mapped_column(QTY)
    delivery: Mapped[Delivery] = relationship(back_populates="lines")


class Invoice(Model):
    """`open` until paid in full (`paid`), written off (`written_off`) or handed over to a
    collection agency (`handed_over`, still collectable). `balance` is what is still owed."""

    __tablename__ = "invoice"
    id: Mapped[int] = mapped_column(primary_key=True)
    number: Mapped[str] = mapped_column(String(40), unique=True)
    instance_id: Mapped[int | None] = mapped_column(Integer, index=True)
    status: Mapped[str] = mapped_column(String(20), default="open")
    kind: Mapped[str] = mapped_column(String(20))
    source_type: Mapped[str] = mapped_column(String(20))
    source_number: Mapped[str] = mapped_column(String(40), index=True)
    sales_order_id: Mapped[int | None] = mapped_column(ForeignKey("sales_order.id"), index=True)
    customer_id: Mapped[int] = mapped_column(ForeignKey("customer.id"), index=True)
    contact_id: Mapped[int | None] = mapped_column(ForeignKey("contact.id"))
    currency: Mapped[str] = mapped_column(String(3))
    issue_date: Mapped[date] = mapped_column(Date)
    payment_terms_days: Mapped[int] = mapped_column(Integer)
    due_date: Mapped[date] = mapped_column(Date, index=True)
    total_net: Mapped[Decimal] = mapped_column(MONEY)
    total_tax: Mapped[Decimal] = mapped_column(MONEY)
    total: Mapped[Decimal] = mapped_column(MONEY)
    balance: Mapped[Decimal] = mapped_column(MONEY)
    written_off: Mapped[Decimal] = mapped_column(MONEY, default=ZERO)
    dunning_level: Mapped[int] = mapped_column(Integer, default=0)
    last_dunned_on: Mapped[date | None] = mapped_column(Date)
    collection_note: Mapped[str | None] = mapped_column(Text)
    paid_on: Mapped[date | None] = mapped_column(Date)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    sales_order: Mapped[SalesOrder | None] = relationship()
    customer: Mapped[Customer] = relationship()
    contact: Mapped[Contact | None] = relationship()
    lines: Mapped[list[InvoiceLine]] = relationship(
        back_populates="invoice", order_by="InvoiceLine.position", cascade="all, delete-orphan"
    )
    payments: Mapped[list[Payment]] = relationship(back_populates="invoice", order_by="Payment.id")


class InvoiceLine(Model):
    __tablename__ = "invoice_line"
    id: Mapped[int] = mapped_column(primary_key=True)
    invoice_id: Mapped[int] = mapped_column(ForeignKey("invoice.id"), index=True)
    position: Mapped[int] = mapped_column(Integer)
    product: Mapped[str] = mapped_column(String(200))
    product_id: Mapped[int | None] = mapped_column(ForeignKey("product.id"))
    order_line_id: Mapped[int | None] = mapped_column(ForeignKey("sales_order_line.id"))
    qty: Mapped[Decimal] = mapped_column(QTY)
    unit_price: Mapped[Decimal] = mapped_column(MONEY)
    discount_percent: Mapped[Decimal] = mapped_column(RATE, default=ZERO)
    tax_rate: Mapped[Decimal] = mapped_column(RATE, default=ZERO)
    net: Mapped[Decimal] = mapped_column(MONEY)
    tax: Mapped[Decimal] = mapped_column(MONEY)
    invoice: Mapped[Invoice] = relationship(back_populates="lines")


class Payment(Model):
    """Money received against an invoice; one bank reference books once per invoice."""

    __tablename__ = "payment"
    __table_args__ = (UniqueConstraint("invoice_id", "reference"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    number: Mapped[str] = mapped_column(String(40), unique=True)
    instance_id: Mapped[int | None] = mapped_column(Integer, index=True)
    status: Mapped[str] = mapped_column(String(20), default="booked")
    invoice_id: Mapped[int] = mapped_column(ForeignKey("invoice.id"), index=True)
    amount: Mapped[Decimal] = mapped_column(MONEY)
    currency: Mapped[str] = mapped_column(String(3))
    paid_on: Mapped[date] = mapped_column(Date)
    reference: Mapped[str] = mapped_column(String(200))
    booked_by: Mapped[str] = mapped_column(String(80))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    invoice: Mapped[Invoice] = relationship(back_populates="payments")


# -- lookups -----------------------------------------------------------------------------------
def _by_number(model: Any, number: Any, field: str) -> Any:
    document = db.session.scalar(select(model).where(model.number == str(number or "").strip()))
    if document is None:
        raise InvalidData(
            [FieldError(field, f"no {model.__tablename__.replace('_', ' ')} numbered {number!r}")]
        )
    return document


def lead_by_number(number: str, field: str = "lead_number") -> Lead:
    lead: Lead = _by_number(Lead, number, field)
    return lead


def quote_by_number(number: str, field: str = "quote_number") -> Quote:
    quote: Quote = _by_number(Quote, number, field)
    return quote


def order_by_number(number: str, field: str = "order_number") -> SalesOrder:
    order: SalesOrder = _by_number(SalesOrder, number, field)
    return order


def invoice_by_number(number: str, field: str = "invoice_number") -> Invoice:
    invoice: Invoice = _by_number(Invoice, number, field)
    return invoice


def _new_number(model: Any, prefix: str, now: datetime) -> str:
    """The next gapless number; refuses a number some document already carries (imported data)."""
    number = next_number(prefix, now)
    if db.session.scalar(select(model.id).where(model.number == number)) is not None:
        raise InvalidData(
            [
                FieldError(
                    "number", f"{number} already exists: the {prefix} numbering is out of step with the data"
                )
            ]
        )
    return number


# -- small input helpers ----------------------------------------------------------------------
def _text(value: Any, field: str, *, required: bool = False, max_length: int | None = None) -> str:
    text = "" if value is None else str(value).strip()
    if required and not text:
        raise InvalidData([FieldError(field, "this field is required")])
    if max_length is not None and len(text) > max_length:
        raise InvalidData([FieldError(field, f"at most {max_length} characters")])
    return text


def _choice(value: Any, field: str, allowed: tuple[Any, ...]) -> Any:
    if value not in allowed:
        shown = ", ".join(str(a) for a in allowed)
        raise InvalidData([FieldError(field, f"{value!r} is not one of {shown}")])
    return value


def _integer(value: Any, field: str, minimum: int, maximum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int | str | Decimal | float):
        raise InvalidData([FieldError(field, f"{value!r} is not a whole number")])
    number = to_decimal(value, field)
    if number != number.to_integral_value():
        raise InvalidData([FieldError(field, f"{value!r} is not a whole number")])
    if not minimum <= number <= maximum:
        raise InvalidData([FieldError(field, f"must be between {minimum} and {maximum}, got {number}")])
    return int(number)


def _positive_qty(value: Any, field: str) -> Decimal:
    qty = to_decimal(value, field)
    if qty <= 0:
        raise InvalidData([FieldError(field, f"must be more than 0, got {qty}")])
    if qty != qty.quantize(Decimal("0.001")):
        raise InvalidData([FieldError(field, f"at most 3 decimals, got {qty}")])
    return qty


def _price(value: Any, field: str) -> Decimal:
    price = to_decimal(value, field, minimum=ZERO)
    if price != money(price):
        raise InvalidData([FieldError(field, f"at most 2 decimals, got {price}")])
    return price


def _percent(value: Any, field: str) -> Decimal:
    return to_decimal(value, field, minimum=ZERO, maximum=HUNDRED)


def percent_text(value: Decimal) -> str:
    """`15`, `12.5`: a percentage without trailing zeros, never in exponent form."""
    text = format(value.normalize(), "f")
    return text


def _task_completer(ctx: OperationContext, spec_ids: tuple[str, ...]) -> str | None:
    """Who last completed one of these user tasks in this instance (from the task table)."""
    row = db.session.execute(
        select(HumanTask.completed_by, HumanTask.spec_id)
        .where(
            HumanTask.instance_id == ctx.instance_id,
            HumanTask.spec_id.in_(spec_ids),
            HumanTask.status == "completed",
        )
        .order_by(HumanTask.completed_at.desc(), HumanTask.id.desc())
        .limit(1)
    ).first()
    return row.completed_by if row is not None else None


def _who(ctx: OperationContext, *spec_ids: str) -> str:
    """The user behind this step: the engine's actor, else who completed the named task."""
    if ctx.actor and ctx.actor != "system":
        return ctx.actor
    if spec_ids:
        completer = _task_completer(ctx, spec_ids)
        if completer:
            return completer
    return ctx.actor or "system"


def _event(ctx: OperationContext, document_type: str, document: Any, action: str, **detail: Any) -> None:
    record_event(
        document_type,
        document,
        action,
        actor=detail.pop("actor", None) or ctx.actor,
        at=ctx.now,
        instance_id=ctx.instance_id or None,
        **detail,
    )


def _mail_once(
    ctx: OperationContext, to: str | None, subject: str, body: str, *, kind: str, dedupe_key: str
) -> bool:
    """Queue one e-mail per key (a retried step does not send twice); False when there is no
    address or the mail was queued before."""
    if not to:
        return False
    if db.session.scalar(select(OutboxMail.id).where(OutboxMail.dedupe_key == dedupe_key)) is not None:
        return False
    queue_mail(
        to, subject, body, now=ctx.now, kind=kind, dedupe_key=dedupe_key, instance_id=ctx.instance_id or None
    )
    return True


def _email_of(contact: Contact | None, customer: Customer) -> str | None:
    return (contact.email if contact is not None and contact.email else None) or customer.email


def _sum(values: list[Decimal]) -> Decimal:
    return sum(values, ZERO)


# -- leads -------------------------------------------------------------------------------------
def _sales_users() -> list[str]:
    return list(
        db.session.scalars(
            select(User.username)
            .join(UserRole, UserRole.user_id == User.id)
            .where(UserRole.role_name == "sales", User.active.is_(True))
            .order_by(User.username)
        )
    )


def choose_lead_owner(captured_by: str) -> str | None:
    """`captured_by` if they sell, else the sales user with the fewest open leads (None: no
    sales user is known, the lead's tasks go to the whole sales team)."""
    sellers = _sales_users()
    if captured_by in sellers:
        return captured_by
    if not sellers:
        return None
    rows = db.session.execute(
        select(Lead.owner, func.count())
        .where(Lead.status == "open", Lead.owner.in_(sellers))
        .group_by(Lead.owner)
    ).tuples()
    open_counts = {owner: count for owner, count in rows}
    return min(sellers, key=lambda user: (open_counts.get(user, 0), user))


def _lead_result(lead: Lead) -> dict[str, Any]:
    return {
        "number": lead.number,
        "owner": lead.owner,
        "created_at": lead.created_at.isoformat(),
        "status": lead.status,
        "customer": lead.customer.name,
    }


@operation("create_lead")
def create_lead(
    ctx: OperationContext,
    company: str,
    contact_name: str,
    email: str | None = None,
    phone: str | None = "",
    source: str = "other",
    interest: str = "",
    estimated_value: str | None = None,
    captured_by: str | None = None,
) -> dict[str, Any]:
    if ctx.instance_id:
        existing = db.session.scalar(select(Lead).where(Lead.instance_id == ctx.instance_id))
        if existing is not None:  # a retried step
            return _lead_result(existing)
    company_name = _text(company, "company", required=True, max_length=200)
    person = _text(contact_name, "contact_name", required=True, max_length=200)
    _choice(source, "source", LEAD_SOURCES)
    value = (
        None
        if estimated_value in (None, "")
        else to_decimal(estimated_value, "estimated_value", minimum=ZERO)
    )
    mail = _text(email, "email", max_length=254) or None
    phone_text = _text(phone, "phone", max_length=60) or None
    who = _text(captured_by, "captured_by") or ctx.actor

    customer = find_or_create_customer(company_name, now=ctx.now, email=mail, phone=phone_text)
    if mail and not customer.email:
        customer.email = mail
    contact = db.session.scalar(
        select(Contact).where(Contact.customer_id == customer.id, Contact.name == person)
    )
    if contact is None:
        contact = Contact(customer_id=customer.id, name=person, email=mail, phone=phone_text)
        db.session.add(contact)
    else:
        contact.email = mail or contact.email
        contact.phone = phone_text or contact.phone
    lead = Lead(
        number=_new_number(Lead, "L", ctx.now),
        instance_id=ctx.instance_id or None,
        status="open",
        customer=customer,
        contact=contact,
        source=source,
        interest=_text(interest, "interest"),
        estimated_value=money(value) if value is not None else None,
        owner=choose_lead_owner(who),
        captured_by=who,
        created_at=ctx.now,
        updated_at=ctx.now,
    )
    db.session.add(lead)
    _event(ctx, "lead", lead, "created", actor=who, owner=lead.owner, source=source, customer=customer.name)
    return _lead_result(lead)


@operation("log_lead_contact")
def log_lead_contact(ctx: OperationContext, lead_number: str, note: str) -> dict[str, Any]:
    lead = lead_by_number(lead_number)
    text = _text(note, "note", required=True)
    who = _who(ctx, "qualify_lead", "follow_up_lead")
    entry = LeadContactLog(lead=lead, at=ctx.now, actor=who, note=text)
    db.session.add(entry)
    lead.last_contact_at = ctx.now
    lead.updated_at = ctx.now
    _event(ctx, "lead", lead, "contact_logged", actor=who, note=text)
    return {"lead_number": lead.number, "logged_at": ctx.now.isoformat(), "by": who}


LEAD_STATUSES = ("open", "qualified", "unqualified", "cold", "converted")
LEAD_CLOSED = ("unqualified", "cold", "converted")


@status_setter("lead")
def set_lead_status(number: str, status: str, reason: str | None, ctx: OperationContext) -> dict[str, Any]:
    lead = lead_by_number(number, "number")
    _choice(status, "status", LEAD_STATUSES)
    if lead.status == status:
        return {"status": lead.status, "number": lead.number}
    if lead.status in LEAD_CLOSED:
        raise InvalidData([FieldError("status", f"lead {lead.number} is already {lead.status}")])
    previous = lead.status
    lead.status, lead.status_reason, lead.updated_at = status, reason, ctx.now
    _event(ctx, "lead", lead, "status_changed", previous=previous, status=status, reason=reason)
    return {"status": lead.status, "number": lead.number}


# -- quotes ------------------------------------------------------------------------------------
def _quote_lines(lines: Any) -> list[dict[str, Any]]:
    """Validated quote lines with their amounts; InvalidData names `lines/<i>/<field>`."""
    if not isinstance(lines, list) or not lines:
        raise InvalidData([FieldError("lines", "at least one line is required")])
    clean = []
    for i, line in enumerate(lines):
        if not isinstance(line, dict):
            raise InvalidData([FieldError(f"lines/{i}", "a line must be an object")])
        code = _text(line.get("product"), f"lines/{i}/product", required=True)
        product = product_by_code(code, f"lines/{i}/product")
        qty = _positive_qty(line.get("qty"), f"lines/{i}/qty")
        unit_price = _price(line.get("unit_price"), f"lines/{i}/unit_price")
        discount = _percent(line.get("discount_percent", "0"), f"lines/{i}/discount_percent")
        tax_rate = _percent(line.get("tax_rate", "0"), f"lines/{i}/tax_rate")
        amounts = line_amounts(qty, unit_price, discount, tax_rate)
        clean.append(
            {
                "product": code,
                "product_id": product.id,
                "qty": qty,
                "unit_price": unit_price,
                "discount_percent": discount,
                "tax_rate": tax_rate,
                "net": amounts.net,
                "tax": amounts.tax,
            }
        )
    return clean


def _quote_result(quote: Quote) -> dict[str, Any]:
    return {
        "number": quote.number,
        "revision": quote.revision,
        "status": quote.status,
        "customer": quote.customer.name,
        "currency": quote.currency,
        "total_net": money_text(quote.total_net),
        "total_tax": money_text(quote.total_tax),
        "total_gross": money_text(quote.total_gross),
        "max_discount_percent": percent_text(quote.max_discount_percent),
        "valid_until": quote.valid_until.isoformat(),
        "payment_terms_days": quote.payment_terms_days,
        "author": quote.author,
    }


def _completed_tasks(ctx: OperationContext, spec_ids: tuple[str, ...]) -> list[Any]:
    """This instance's completed user tasks of these kinds, in the order they were created."""
    if not ctx.instance_id:
        return []
    return list(
        db.session.execute(
            select(HumanTask.id, HumanTask.spec_id, HumanTask.completed_by)
            .where(
                HumanTask.instance_id == ctx.instance_id,
                HumanTask.spec_id.in_(spec_ids),
                HumanTask.status == "completed",
            )
            .order_by(HumanTask.id)
        ).all()
    )


def _discount_decisions(ctx: OperationContext, *, previous_revision: bool) -> list[Any]:
    """The approval tasks completed on the quote's current revision (after the last *Prepare
    quote*), or, when a new revision is being saved, on the previous one."""
    tasks = _completed_tasks(ctx, ("prepare_quote", *DISCOUNT_TASKS))
    prepared = [task.id for task in tasks if task.spec_id == "prepare_quote"]
    if previous_revision:
        low, high = (prepared[-2] if len(prepared) > 1 else 0), (prepared[-1] if prepared else 0)
    else:
        low, high = (prepared[-1] if prepared else 0), None
    return [
        task
        for task in tasks
        if task.spec_id in DISCOUNT_TASKS and task.id > low and (high is None or task.id < high)
    ]


def _record_discount_decisions(ctx: OperationContext, quote: Quote, decisions: list[Any], last: str) -> None:
    """History of the approvers' decisions: all approvals, the last one `last` with its reason."""
    for i, task in enumerate(decisions):
        final = i == len(decisions) - 1
        decision = last if final else "approve"
        _event(
            ctx,
            "quote",
            quote,
            "discount_rejected" if decision == "reject" else "discount_approved",
            actor=task.completed_by,
            revision=quote.revision,
            level="director" if task.spec_id == "approve_discount_director" else "manager",
            reason=(ctx.data.get("reason") or "") if final else "",
        )


@operation("save_quote")
def save_quote(
    ctx: OperationContext,
    lead_number: str,
    lines: list[dict[str, Any]],
    validity_days: int = 30,
    payment_terms_days: int = 14,
    currency: str = "EUR",
    notes: str | None = "",
) -> dict[str, Any]:
    lead = lead_by_number(lead_number)
    if lead.status in LEAD_CLOSED:
        raise InvalidData([FieldError("lead_number", f"lead {lead.number} is {lead.status}")])
    clean = _quote_lines(lines)
    days = _integer(validity_days, "validity_days", 1, 365)
    terms = _integer(payment_terms_days, "payment_terms_days", 1, 365)
    _choice(terms, "payment_terms_days", PAYMENT_TERMS)
    _choice(currency, "currency", CURRENCIES)
    note_text = _text(notes, "notes")
    author = ((ctx.data.get("completed_by") or {}).get("prepare_quote")) or _who(ctx, "prepare_quote")
    total_net = _sum([line["net"] for line in clean])
    total_tax = _sum([line["tax"] for line in clean])
    max_discount = max(line["discount_percent"] for line in clean)
    valid_until = ctx.now.date() + timedelta(days=days)

    quote = db.session.scalar(
        select(Quote).where(Quote.lead_id == lead.id, Quote.status == "draft").order_by(Quote.id.desc())
    )
    if quote is not None:
        if ctx.instance_id and len(_completed_tasks(ctx, ("prepare_quote",))) == quote.revision:
            return _quote_result(quote)  # a retried step: this revision is saved already
        previous = {
            "revision": quote.revision,
            "total_net": quote.total_net,
            "max_discount": quote.max_discount_percent,
        }
        _record_discount_decisions(ctx, quote, _discount_decisions(ctx, previous_revision=True), "reject")
        quote.revision += 1
        action = "revised"
    else:
        quote = Quote(
            number=_new_number(Quote, "Q", ctx.now),
            instance_id=ctx.instance_id or None,
            status="draft",
            revision=1,
            lead=lead,
            customer=lead.customer,
            contact=lead.contact,
            created_at=ctx.now,
        )
        db.session.add(quote)
        previous = {}
        action = "created"
    quote.author = author
    quote.currency = currency
    quote.payment_terms_days = terms
    quote.validity_days = days
    quote.valid_until = valid_until
    quote.notes = note_text
    quote.total_net, quote.total_tax, quote.total_gross = total_net, total_tax, total_net + total_tax
    quote.max_discount_percent = max_discount
    quote.updated_at = ctx.now
    for position, line in enumerate(clean, start=1):
        quote.all_lines.append(QuoteLine(revision=quote.revision, position=position, **line))
    if lead.status == "open":
        lead.status, lead.updated_at = "qualified", ctx.now
        _event(
            ctx,
            "lead",
            lead,
            "qualified",
            actor=author,
            quote=quote.number,
            note=ctx.data.get("contact_note"),
        )
    _event(
        ctx,
        "quote",
        quote,
        action,
        actor=author,
        revision=quote.revision,
        previous=previous,
        total_net=quote.total_net,
        max_discount_percent=max_discount,
        lines=[{k: v for k, v in line.items() if k != "product_id"} for line in clean],
    )
    return _quote_result(quote)


def _quote_text(quote: Quote) -> str:
    rows = [
        f"{line.position}. {line.product}: {line.qty.normalize():f} x {line.unit_price} {quote.currency}"
        + (f" less {percent_text(line.discount_percent)} %" if line.discount_percent else "")
        + f" = {line.net} net, tax {percent_text(line.tax_rate)} % {line.tax}"
        for line in quote.lines
    ]
    return "\n".join(
        [
            f"Quote {quote.number} (revision {quote.revision}) for {quote.customer.name}",
            "",
            *rows,
            "",
            f"Total net {quote.total_net} {quote.currency}, tax {quote.total_tax}, total {quote.total_gross}",
            f"Valid until {quote.valid_until.isoformat()}; payment net {quote.payment_terms_days} days.",
            *([quote.notes] if quote.notes else []),
        ]
    )


@operation("send_quote")
def send_quote(ctx: OperationContext, quote_number: str) -> dict[str, Any]:
    quote = quote_by_number(quote_number)
    if quote.status == "sent":
        return {"number": quote.number, "sent_at": quote.sent_at.isoformat() if quote.sent_at else None}
    if quote.status != "draft":
        raise InvalidData([FieldError("quote_number", f"quote {quote.number} is {quote.status}, not draft")])
    _record_discount_decisions(ctx, quote, _discount_decisions(ctx, previous_revision=False), "approve")
    to = _email_of(quote.contact, quote.customer)
    mailed = _mail_once(
        ctx,
        to,
        f"Quote {quote.number} from us",
        _quote_text(quote),
        kind="quote",
        dedupe_key=f"quote:{quote.number}:r{quote.revision}",
    )
    quote.status, quote.sent_at, quote.updated_at = "sent", ctx.now, ctx.now
    _event(ctx, "quote", quote, "sent", to=to, mailed=mailed, revision=quote.revision)
    return {"number": quote.number, "sent_at": ctx.now.isoformat(), "to": to}


QUOTE_STATUSES = ("draft", "sent", "accepted", "lost", "expired")


@status_setter("quote")
def set_quote_status(number: str, status: str, reason: str | None, ctx: OperationContext) -> dict[str, Any]:
    quote = quote_by_number(number, "number")
    _choice(status, "status", QUOTE_STATUSES)
    if quote.status == status:
        return {"status": quote.status, "number": quote.number}
    if quote.status in ("accepted", "lost", "expired"):
        raise InvalidData([FieldError("status", f"quote {quote.number} is already {quote.status}")])
    previous = quote.status
    quote.status, quote.status_reason, quote.updated_at = status, reason, ctx.now
    _event(ctx, "quote", quote, "status_changed", previous=previous, status=status, reason=reason)
    return {"status": quote.status, "number": quote.number}


# -- orders and deliveries ---------------------------------------------------------------------
def _order_result(order: SalesOrder) -> dict[str, Any]:
    return {
        "number": order.number,
        "status": order.status,
        "quote_number": order.quote.number if order.quote else None,
        "total_gross": money_text(order.total_gross),
        "currency": order.currency,
    }


@operation("convert_quote_to_order")
def convert_quote_to_order(
    ctx: OperationContext,
    quote_number: str,
    customer_reference: str | None = "",
    requested_delivery_date: str | None = None,
    delivery_address: str | None = "",
    notes: str | None = "",
) -> dict[str, Any]:
    quote = quote_by_number(quote_number)
    existing = db.session.scalar(select(SalesOrder).where(SalesOrder.quote_id == quote.id))
    if existing is not None:  # a retried step: the order exists
        return _order_result(existing)
    if quote.status != "sent":
        raise InvalidData(
            [
                FieldError(
                    "quote_number",
                    f"quote {quote.number} is {quote.status}; only a sent quote can be accepted",
                )
            ]
        )
    customer = quote.customer
    if customer.credit_hold:
        raise InvalidData(
            [
                FieldError(
                    "customer",
                    f"{customer.name} is on credit hold: new orders are blocked until it is lifted",
                )
            ]
        )
    reference = _text(customer_reference, "customer_reference", max_length=100)
    wanted = (
        parse_day(requested_delivery_date, "requested_delivery_date") if requested_delivery_date else None
    )
    address = _text(delivery_address, "delivery_address")
    acceptance = ctx.data.get("acceptance") if isinstance(ctx.data.get("acceptance"), dict) else None
    order = SalesOrder(
        number=_new_number(SalesOrder, "SO", ctx.now),
        instance_id=ctx.instance_id or None,
        status="open",
        quote=quote,
        customer=customer,
        contact=quote.contact,
        currency=quote.currency,
        payment_terms_days=quote.payment_terms_days,
        customer_reference=reference,
        requested_delivery_date=wanted,
        delivery_address=address,
        notes=_text(notes, "notes"),
        total_net=quote.total_net,
        total_tax=quote.total_tax,
        total_gross=quote.total_gross,
        created_at=ctx.now,
        updated_at=ctx.now,
    )
    for line in quote.lines:
        order.lines.append(
            SalesOrderLine(
                position=line.position,
                product=line.product,
                product_id=line.product_id,
                qty=line.qty,
                delivered_qty=ZERO,
                invoiced_qty=ZERO,
                unit_price=line.unit_price,
                discount_percent=line.discount_percent,
                tax_rate=line.tax_rate,
                net=line.net,
                tax=line.tax,
            )
        )
    db.session.add(order)
    quote.status, quote.accepted_at, quote.updated_at = "accepted", ctx.now, ctx.now
    if acceptance is not None:
        accepted = {"via": "customer portal", "accepted_by": acceptance.get("accepted_by")}
    else:
        accepted = {"via": "sales", "recorded_by": _who(ctx, "record_customer_decision")}
    _event(ctx, "quote", quote, "accepted", order=order.number, customer_reference=reference, **accepted)
    _event(ctx, "sales_order", order, "created", quote=quote.number, total_gross=order.total_gross)
    if quote.lead is not None and quote.lead.status not in LEAD_CLOSED:
        quote.lead.status, quote.lead.updated_at = "converted", ctx.now
        _event(ctx, "lead", quote.lead, "converted", order=order.number)
    return _order_result(order)


def _matches(line: SalesOrderLine, code: str) -> bool:
    if line.product == code:
        return True
    product = db.session.get(Product, line.product_id) if line.product_id else None
    return product is not None and code in (product.code, product.name)


def _delivery_result(delivery: Delivery) -> dict[str, Any]:
    order = delivery.order
    return {
        "number": delivery.number,
        "complete": all(line.open_qty <= 0 for line in order.lines),
        "open_lines": [
            {"product": line.product, "qty": float(line.open_qty)}
            for line in order.lines
            if line.open_qty > 0
        ],
    }


@operation("record_delivery")
def record_delivery(
    ctx: OperationContext,
    order_number: str,
    lines: list[dict[str, Any]],
    carrier: str = "",
    tracking_number: str | None = "",
    shipped_on: str | None = None,
) -> dict[str, Any]:
    order = order_by_number(order_number)
    if ctx.task_id:
        recorded = db.session.scalar(select(Delivery).where(Delivery.task_id == ctx.task_id))
        if recorded is not None:  # a retried step: this delivery is booked already
            return _delivery_result(recorded)
    if order.status not in ("open", "partially_delivered"):
        raise InvalidData(
            [FieldError("order_number", f"order {order.number} is {order.status}: nothing to ship")]
        )
    if not isinstance(lines, list) or not lines:
        raise InvalidData([FieldError("lines", "at least one shipped line is required")])
    carrier_text = _text(carrier, "carrier", required=True, max_length=100)
    day = parse_day(shipped_on, "shipped_on") if shipped_on else ctx.now.date()
    still_open = {line.id: line.open_qty for line in order.lines}
    allocations: list[tuple[SalesOrderLine, Decimal]] = []
    for i, shipped in enumerate(lines):
        if not isinstance(shipped, dict):
            raise InvalidData([FieldError(f"lines/{i}", "a line must be an object")])
        code = _text(shipped.get("product"), f"lines/{i}/product", required=True)
        qty = _positive_qty(shipped.get("qty"), f"lines/{i}/qty")
        candidates = [line for line in order.lines if _matches(line, code)]
        if not candidates:
            raise InvalidData([FieldError(f"lines/{i}/product", f"{code!r} is not on order {order.number}")])
        available = _sum([still_open[line.id] for line in candidates])
        if qty > available:
            raise InvalidData(
                [
                    FieldError(
                        f"lines/{i}/qty",
                        f"only {available.normalize():f} of {code} still to ship, got {qty.normalize():f}",
                    )
                ]
            )
        remaining = qty
        for line in candidates:
            take = min(remaining, still_open[line.id])
            if take > 0:
                allocations.append((line, take))
                still_open[line.id] -= take
                remaining -= take
    delivery = Delivery(
        number=_new_number(Delivery, "D", ctx.now),
        instance_id=ctx.instance_id or None,
        status="shipped",
        order=order,
        carrier=carrier_text,
        tracking_number=_text(tracking_number, "tracking_number", max_length=100),
        shipped_on=day,
        task_id=ctx.task_id or None,
        created_at=ctx.now,
        updated_at=ctx.now,
    )
    for line, qty in allocations:
        line.delivered_qty += qty
        delivery.lines.append(DeliveryLine(order_line_id=line.id, product=line.product, qty=qty))
    db.session.add(delivery)
    complete = all(line.open_qty <= 0 for line in order.lines)
    order.status, order.updated_at = ("delivered" if complete else "partially_delivered"), ctx.now
    shipped_now = [{"product": line.product, "qty": qty} for line, qty in allocations]
    _event(ctx, "delivery", delivery, "shipped", order=order.number, lines=shipped_now, carrier=carrier_text)
    _event(
        ctx,
        "sales_order",
        order,
        "delivered" if complete else "partially_delivered",
        delivery=delivery.number,
        lines=shipped_now,
    )
    return _delivery_result(delivery)


# -- invoices ----------------------------------------------------------------------------------
def _invoice_result(invoice: Invoice) -> dict[str, Any]:
    return {
        "number": invoice.number,
        "due_date": invoice.due_date.isoformat(),
        "issue_date": invoice.issue_date.isoformat(),
        "total": money_text(invoice.total),
        "balance": money_text(invoice.balance),
        "currency": invoice.currency,
        "status": invoice.status,
    }


def _invoice_text(invoice: Invoice) -> str:
    rows = [
        f"{line.position}. {line.product}: {line.qty.normalize():f} x {line.unit_price} = {line.net} net,"
        f" tax {line.tax}"
        for line in invoice.lines
    ]
    return "\n".join(
        [
            f"Invoice {invoice.number} of {invoice.issue_date.isoformat()} for {invoice.customer.name}",
            "",
            *rows,
            "",
            f"Total {invoice.total} {invoice.currency} (net {invoice.total_net}, tax {invoice.total_tax}),",
            f"due on {invoice.due_date.isoformat()}. Please quote {invoice.number} with your payment.",
        ]
    )


@operation("create_invoice")
def create_invoice(
    ctx: OperationContext, source_type: str, source_number: str, kind: str = "goods"
) -> dict[str, Any]:
    _choice(source_type, "source_type", ("sales_order", "repair_ticket"))
    _choice(kind, "kind", INVOICE_KINDS)
    today = ctx.now.date()
    order: SalesOrder | None = None
    contact: Contact | None = None
    drafts: list[dict[str, Any]] = []
    if source_type == "sales_order":
        if kind != "goods":
            raise InvalidData([FieldError("kind", f"a sales order is invoiced as goods, not {kind}")])
        order = order_by_number(source_number, "source_number")
        customer, currency, terms, contact = (
            order.customer,
            order.currency,
            order.payment_terms_days,
            order.contact,
        )
        for line in order.lines:
            qty = line.delivered_qty - line.invoiced_qty
            if qty > 0:
                drafts.append(
                    {
                        "product": line.product,
                        "product_id": line.product_id,
                        "order_line_id": line.id,
                        "qty": qty,
                        "unit_price": line.unit_price,
                        "discount_percent": line.discount_percent,
                        "tax_rate": line.tax_rate,
                    }
                )
        if not drafts:
            earlier = db.session.scalar(
                select(Invoice).where(Invoice.sales_order_id == order.id).order_by(Invoice.id.desc())
            )
            if earlier is not None:  # a retried step: everything delivered is invoiced already
                return _invoice_result(earlier)
            raise InvalidData(
                [FieldError("source_number", f"nothing of order {order.number} is delivered yet")]
            )
    else:
        earlier = db.session.scalar(
            select(Invoice).where(
                Invoice.source_type == source_type,
                Invoice.source_number == source_number,
                Invoice.kind == kind,
            )
        )
        if earlier is not None:
            return _invoice_result(earlier)
        from . import repairs  # written alongside; imported here so sales does not depend on it

        customer_name, currency, repair_lines = repairs.invoice_lines(source_number, kind)
        found = db.session.scalar(select(Customer).where(Customer.name == customer_name))
        if found is None:
            raise InvalidData([FieldError("customer", f"unknown customer {customer_name!r}")])
        customer, terms = found, found.payment_terms_days
        _choice(currency, "currency", CURRENCIES)
        for i, charge in enumerate(repair_lines):
            code = _text(charge.get("product"), f"lines/{i}/product", required=True)
            catalogue = db.session.scalar(
                select(Product).where((Product.code == code) | (Product.name == code))
            )
            drafts.append(
                {
                    "product": code,
                    "product_id": catalogue.id if catalogue is not None else None,
                    "order_line_id": None,
                    "qty": _positive_qty(charge.get("qty"), f"lines/{i}/qty"),
                    "unit_price": to_decimal(charge.get("unit_price"), f"lines/{i}/unit_price", minimum=ZERO),
                    "discount_percent": ZERO,
                    "tax_rate": _percent(charge.get("tax_rate", "0"), f"lines/{i}/tax_rate"),
                }
            )
        if not drafts:
            raise InvalidData(
                [FieldError("source_number", f"repair ticket {source_number} has nothing to invoice")]
            )
    invoice = Invoice(
        number=_new_number(Invoice, "INV", ctx.now),
        instance_id=ctx.instance_id or None,
        status="open",
        kind=kind,
        source_type=source_type,
        source_number=str(source_number),
        sales_order=order,
        customer=customer,
        contact=contact,
        currency=currency,
        issue_date=today,
        payment_terms_days=terms,
        due_date=today + timedelta(days=terms),
        dunning_level=0,
        written_off=ZERO,
        created_at=ctx.now,
        updated_at=ctx.now,
    )
    for position, draft in enumerate(drafts, start=1):
        amounts = line_amounts(
            draft["qty"], draft["unit_price"], draft["discount_percent"], draft["tax_rate"]
        )
        invoice.lines.append(InvoiceLine(position=position, net=amounts.net, tax=amounts.tax, **draft))
    invoice.total_net = _sum([line.net for line in invoice.lines])
    invoice.total_tax = _sum([line.tax for line in invoice.lines])
    invoice.total = invoice.total_net + invoice.total_tax
    invoice.balance = invoice.total
    db.session.add(invoice)
    if order is not None:
        for line in order.lines:
            line.invoiced_qty = line.delivered_qty
        if all(line.open_qty <= 0 for line in order.lines):
            order.status = "invoiced"
        order.updated_at = ctx.now
        _event(ctx, "sales_order", order, "invoiced", invoice=invoice.number, total=invoice.total)
    to = _email_of(contact, customer)
    mailed = _mail_once(
        ctx,
        to,
        f"Invoice {invoice.number}",
        _invoice_text(invoice),
        kind="invoice",
        dedupe_key=f"invoice:{invoice.number}",
    )
    _event(
        ctx,
        "invoice",
        invoice,
        "issued",
        source=f"{source_type} {source_number}",
        kind=kind,
        total=invoice.total,
        due_date=invoice.due_date,
        to=to,
        mailed=mailed,
    )
    return _invoice_result(invoice)


def _payment_status(invoice: Invoice, payment: Payment | None = None) -> dict[str, Any]:
    return {
        "paid_in_full": invoice.balance <= 0,
        "balance": money_text(invoice.balance),
        "invoice_status": invoice.status,
        "payment_number": payment.number if payment is not None else None,
    }


@operation("register_payment")
def register_payment(
    ctx: OperationContext, invoice_number: str, amount: Any, paid_on: str | None = None, reference: str = ""
) -> dict[str, Any]:
    invoice = invoice_by_number(invoice_number)
    value = to_decimal(amount, "amount", minimum=CENT)
    if value != money(value):
        raise InvalidData([FieldError("amount", f"at most 2 decimals, got {value}")])
    ref = _text(reference, "reference", required=True, max_length=200)
    day = parse_day(paid_on, "paid_on") if paid_on else ctx.now.date()
    booked = db.session.scalar(
        select(Payment).where(Payment.invoice_id == invoice.id, Payment.reference == ref)
    )
    if booked is not None:
        if booked.amount != value:
            raise InvalidData(
                [FieldError("reference", f"{ref} is already booked on {invoice.number} with {booked.amount}")]
            )
        return _payment_status(invoice, booked)  # the same bank line again: booked once
    if invoice.status == "paid":
        raise InvalidData([FieldError("invoice_number", f"invoice {invoice.number} is already paid in full")])
    if invoice.status == "written_off":
        raise InvalidData([FieldError("invoice_number", f"invoice {invoice.number} was written off")])
    if value > invoice.balance:
        raise InvalidData(
            [
                FieldError(
                    "amount",
                    f"{value} {invoice.currency} is more than the open balance of {invoice.number}"
                    f" ({invoice.balance} {invoice.currency})",
                )
            ]
        )
    payment = Payment(
        number=_new_number(Payment, "PAY", ctx.now),
        instance_id=ctx.instance_id or None,
        status="booked",
        invoice=invoice,
        amount=value,
        currency=invoice.currency,
        paid_on=day,
        reference=ref,
        booked_by=ctx.actor,
        created_at=ctx.now,
        updated_at=ctx.now,
    )
    db.session.add(payment)
    invoice.balance -= value
    invoice.updated_at = ctx.now
    if invoice.balance <= 0:
        invoice.status, invoice.paid_on = "paid", day
    _event(ctx, "payment", payment, "booked", invoice=invoice.number, amount=value, reference=ref)
    _event(
        ctx,
        "invoice",
        invoice,
        "paid" if invoice.status == "paid" else "partially_paid",
        payment=payment.number,
        amount=value,
        reference=ref,
        balance=invoice.balance,
    )
    return _payment_status(invoice, payment)


def days_overdue(invoice: Invoice, today: date) -> int:
    return (today - invoice.due_date).days


@operation("get_invoice_status")
def get_invoice_status(ctx: OperationContext, invoice_number: str) -> dict[str, Any]:
    invoice = invoice_by_number(invoice_number)
    return {
        "days_overdue": days_overdue(invoice, ctx.now.date()),
        "balance": money_text(invoice.balance),
        "status": invoice.status,
        "due_date": invoice.due_date.isoformat(),
        "dunning_level": invoice.dunning_level,
    }


DUNNING_SUBJECTS = {1: "Payment reminder", 2: "Second payment reminder"}


@operation("send_dunning_letter")
def send_dunning_letter(ctx: OperationContext, invoice_number: str, level: Any) -> dict[str, Any]:
    invoice = invoice_by_number(invoice_number)
    step = _integer(level, "level", 1, 2)
    if invoice.status not in OPEN_INVOICE_STATES or invoice.balance <= 0:
        return {"sent": False, "level": step, "reason": f"invoice is {invoice.status}"}
    overdue = days_overdue(invoice, ctx.now.date())
    to = _email_of(invoice.contact, invoice.customer)
    body = "\n".join(
        [
            f"Dear {invoice.contact.name if invoice.contact else invoice.customer.name},",
            "",
            f"our invoice {invoice.number} of {invoice.issue_date.isoformat()} was due on"
            f" {invoice.due_date.isoformat()} and is {overdue} days overdue.",
            f"The open balance is {invoice.balance} {invoice.currency}."
            f" Please pay it now, quoting {invoice.number}.",
            *(["This is our second reminder."] if step == 2 else []),
        ]
    )
    mailed = _mail_once(
        ctx,
        to,
        f"{DUNNING_SUBJECTS[step]}: invoice {invoice.number}",
        body,
        kind="dunning",
        dedupe_key=f"dunning:{invoice.number}:{step}",
    )
    invoice.dunning_level = max(invoice.dunning_level, step)
    invoice.last_dunned_on, invoice.updated_at = ctx.now.date(), ctx.now
    _event(
        ctx,
        "invoice",
        invoice,
        "dunning_letter",
        level=step,
        to=to,
        mailed=mailed,
        balance=invoice.balance,
        days_overdue=overdue,
    )
    return {"sent": mailed, "level": step, "to": to}


@operation("apply_collection_action")
def apply_collection_action(
    ctx: OperationContext, invoice_number: str, action: str, note: str | None = ""
) -> dict[str, Any]:
    invoice = invoice_by_number(invoice_number)
    _choice(action, "action", COLLECTION_ACTIONS)
    text = _text(note, "note")
    if invoice.status not in OPEN_INVOICE_STATES:
        raise InvalidData([FieldError("invoice_number", f"invoice {invoice.number} is {invoice.status}")])
    invoice.dunning_level = max(invoice.dunning_level, 3)
    invoice.updated_at = ctx.now
    detail: dict[str, Any] = {"measure": action, "note": text}
    if action == "stop_deliveries":
        customer = invoice.customer
        if not customer.credit_hold:
            customer.credit_hold = True
            _event(ctx, "customer", customer, "credit_hold", invoice=invoice.number, note=text)
    elif action == "payment_plan":
        invoice.collection_note = text
    elif action == "collection_agency":
        invoice.status, invoice.collection_note = "handed_over", text
    else:
        detail["written_off"] = invoice.balance
        invoice.written_off, invoice.balance, invoice.status = invoice.balance, ZERO, "written_off"
        invoice.collection_note = text
    _event(ctx, "invoice", invoice, "collection_action", **detail)
    return {"action": action, "invoice_status": invoice.status, "balance": money_text(invoice.balance)}


# -- status changes with a reason, for every document type that registered a setter -----------
@operation("set_status")
def set_status(
    ctx: OperationContext, document_type: str, number: str, status: str, reason: str | None = None
) -> dict[str, Any]:
    setter = STATUS_SETTERS.get(document_type)
    if setter is None:
        known = ", ".join(sorted(STATUS_SETTERS)) or "none"
        raise InvalidData(
            [FieldError("document_type", f"no status changes for {document_type!r} (known: {known})")]
        )
    result = dict(setter(number, _text(status, "status", required=True), reason, ctx) or {})
    result.setdefault("status", status)
    return result


# -- reports -----------------------------------------------------------------------------------
def _bucket(overdue: int) -> str:
    if overdue <= 0:
        return "current"
    if overdue <= 30:
        return "1-30"
    if overdue <= 60:
        return "31-60"
    if overdue <= 90:
        return "61-90"
    return ">90"


def aging_report(today: date) -> dict[str, list[dict[str, Any]]]:
    """Open invoices by days overdue: `current`, `1-30`, `31-60`, `61-90`, `>90`, most overdue first."""
    report: dict[str, list[dict[str, Any]]] = {bucket: [] for bucket in AGING_BUCKETS}
    invoices = db.session.scalars(
        select(Invoice)
        .where(Invoice.status.in_(OPEN_INVOICE_STATES), Invoice.balance > 0)
        .order_by(Invoice.due_date, Invoice.number)
    )
    for invoice in invoices:
        overdue = days_overdue(invoice, today)
        report[_bucket(overdue)].append(
            {
                "number": invoice.number,
                "customer": invoice.customer.name,
                "currency": invoice.currency,
                "total": invoice.total,
                "balance": invoice.balance,
                "due_date": invoice.due_date,
                "days_overdue": overdue,
                "dunning_level": invoice.dunning_level,
                "status": invoice.status,
            }
        )
    return report


def sales_funnel() -> dict[str, int]:
    """How many leads got this far: captured → quoted → ordered → invoiced → paid."""
    count = db.session.scalar
    return {
        "leads": count(select(func.count(Lead.id))) or 0,
        "quoted": count(select(func.count(func.distinct(Quote.lead_id))).where(Quote.lead_id.is_not(None)))
        or 0,
        "ordered": count(select(func.count(SalesOrder.id))) or 0,
        "invoiced": count(
            select(func.count(func.distinct(Invoice.sales_order_id))).where(
                Invoice.sales_order_id.is_not(None)
            )
        )
        or 0,
        "paid": count(
            select(func.count(func.distinct(Invoice.sales_order_id))).where(
                Invoice.sales_order_id.is_not(None), Invoice.status == "paid"
            )
        )
        or 0,
    }


def open_quotes_awaiting_discount_approval() -> list[dict[str, Any]]:
    """Quotes whose discount waits for a manager or director: the open approval tasks."""
    rows = db.session.execute(
        select(HumanTask.id, HumanTask.spec_id, HumanTask.role, HumanTask.document_key, HumanTask.created_at)
        .where(
            HumanTask.spec_id.in_(DISCOUNT_TASKS),
            HumanTask.document_type == "quote",
            HumanTask.status.in_(("open", "claimed")),
        )
        .order_by(HumanTask.created_at, HumanTask.id)
    ).all()
    quotes = {
        q.number: q
        for q in db.session.scalars(select(Quote).where(Quote.number.in_([r.document_key for r in rows])))
    }
    result = []
    for row in rows:
        quote = quotes.get(row.document_key or "")
        if quote is None:
            continue
        result.append(
            {
                "number": quote.number,
                "revision": quote.revision,
                "customer": quote.customer.name,
                "author": quote.author,
                "currency": quote.currency,
                "total_net": quote.total_net,
                "max_discount_percent": quote.max_discount_percent,
                "task_id": row.id,
                "approver_role": row.role,
                "waiting_since": row.created_at,
            }
        )
    return result


__all__ = [
    "Delivery",
    "DeliveryLine",
    "Invoice",
    "InvoiceLine",
    "Lead",
    "LeadContactLog",
    "Payment",
    "Quote",
    "QuoteLine",
    "SalesOrder",
    "SalesOrderLine",
    "aging_report",
    "open_quotes_awaiting_discount_approval",
    "sales_funnel",
]
