"""What every back-office document shares: gapless per-year numbering, money, the per-document
history, and the master data (customers, contacts, products, vendors) several processes use."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from typing import TYPE_CHECKING, Any

from sqlalchemy import (
    JSON,
    Boolean,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    Numeric,
    String,
    Text,
    UniqueConstraint,
    insert,
    select,
    update,
)
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Mapped, mapped_column

from ..db import Base, db
from ..errors import FieldError, InvalidData, NotFound

if TYPE_CHECKING:
    Model = Base
else:
    Model = db.Model

CENT = Decimal("0.01")
CURRENCIES = ("EUR", "USD", "GBP", "PLN")
MONEY = Numeric(14, 2)
QTY = Numeric(14, 3)
RATE = Numeric(7, 3)


# -- numbering ---------------------------------------------------------------------------------
class DocumentSequence(Model):
    """The last number given per document kind and year; incremented inside the caller's
    transaction, so a rolled-back document gives its number back: no gaps."""

    __tablename__ = "document_sequence"
    prefix: Mapped[str] = mapped_column(String(10), primary_key=True)
    year: Mapped[int] = mapped_column(Integer, primary_key=True)
    last_value: Mapped[int] = mapped_column(Integer, default=0)


def next_number(prefix: str, on: date | datetime) -> str:
    """`Q-2026-0001`: the next number of this kind for the year, without gaps under concurrency.

    The UPDATE takes the row lock (PostgreSQL) or the write lock (SQLite) until the caller's
    transaction ends, so two documents can never get the same number."""
    session = db.session
    year = on.year
    bump = (
        update(DocumentSequence)
        .where(DocumentSequence.prefix == prefix, DocumentSequence.year == year)
        .values(last_value=DocumentSequence.last_value + 1)
        .returning(DocumentSequence.last_value)
    )
    value = session.execute(bump).scalar()
    if value is None:
        try:
            with session.begin_nested():
                session.execute(insert(DocumentSequence).values(prefix=prefix, year=year, last_value=1))
            value = 1
        except IntegrityError:  # someone created the year's row meanwhile: take the next one
            value = session.execute(bump).scalar_one()
    return f"{prefix}-{year}-{value:04d}"


# -- money -------------------------------------------------------------------------------------
def to_decimal(
    value: Any, field: str, *, minimum: Decimal | None = None, maximum: Decimal | None = None
) -> Decimal:
    """A Decimal from a form/API value, or InvalidData naming the field."""
    try:
        amount = Decimal(str(value).strip())
    except (InvalidOperation, ValueError):
        raise InvalidData([FieldError(field, f"{value!r} is not a number")]) from None
    if not amount.is_finite():
        raise InvalidData([FieldError(field, f"{value!r} is not a number")])
    if minimum is not None and amount < minimum:
        raise InvalidData([FieldError(field, f"must be at least {minimum}, got {amount}")])
    if maximum is not None and amount > maximum:
        raise InvalidData([FieldError(field, f"must be at most {maximum}, got {amount}")])
    return amount


def money(value: Decimal) -> Decimal:
    return value.quantize(CENT, rounding=ROUND_HALF_UP)


def money_text(value: Decimal | None) -> str | None:
    return None if value is None else str(money(value))


@dataclass(frozen=True)
class LineAmounts:
    net: Decimal
    tax: Decimal
    gross: Decimal


def line_amounts(
    qty: Decimal, unit_price: Decimal, discount_percent: Decimal = Decimal(0), tax_rate: Decimal = Decimal(0)
) -> LineAmounts:
    """net = qty * unit price * (1 - discount %), tax per line, each rounded half-up to cents."""
    net = money(qty * unit_price * (Decimal(100) - discount_percent) / Decimal(100))
    tax = money(net * tax_rate / Decimal(100))
    return LineAmounts(net, tax, net + tax)


def parse_day(value: Any, field: str) -> date:
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    try:
        return date.fromisoformat(str(value)[:10])
    except ValueError:
        raise InvalidData([FieldError(field, f"{value!r} is not a date (YYYY-MM-DD)")]) from None


# -- history -----------------------------------------------------------------------------------
class DocumentEvent(Model):
    """Append-only history of every document: who, when, what changed, and why."""

    __tablename__ = "document_event"
    __table_args__ = (Index("ix_document_event_doc", "document_type", "document_id", "id"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    document_type: Mapped[str] = mapped_column(String(40))
    document_id: Mapped[int] = mapped_column(Integer)
    number: Mapped[str | None] = mapped_column(String(40))
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    actor: Mapped[str] = mapped_column(String(80))
    action: Mapped[str] = mapped_column(String(40))
    instance_id: Mapped[int | None] = mapped_column(Integer)
    detail: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)


def record_event(
    document_type: str,
    document: Any,
    action: str,
    *,
    actor: str,
    at: datetime,
    instance_id: int | None = None,
    **detail: Any,
) -> None:
    """Append one history entry for a document (flushes so the document has its id)."""
    db.session.flush()
    db.session.add(
        DocumentEvent(
            document_type=document_type,
            document_id=document.id,
            number=getattr(document, "number", None),
            at=at,
            actor=actor,
            action=action,
            instance_id=instance_id,
            detail=_plain(detail),
        )
    )


def history(document_type: str, document_id: int) -> list[DocumentEvent]:
    return list(
        db.session.scalars(
            select(DocumentEvent)
            .where(DocumentEvent.document_type == document_type, DocumentEvent.document_id == document_id)
            .order_by(DocumentEvent.id)
        )
    )


def _plain(value: Any) -> Any:
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, date | datetime):
        return value.isoformat()
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


# -- master data -------------------------------------------------------------------------------
class Customer(Model):
    __tablename__ = "customer"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    email: Mapped[str | None] = mapped_column(String(200))
    phone: Mapped[str | None] = mapped_column(String(60))
    address: Mapped[str | None] = mapped_column(Text)
    currency: Mapped[str] = mapped_column(String(3), default="EUR")
    payment_terms_days: Mapped[int] = mapped_column(Integer, default=30)
    credit_hold: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class Contact(Model):
    __tablename__ = "contact"
    id: Mapped[int] = mapped_column(primary_key=True)
    customer_id: Mapped[int] = mapped_column(ForeignKey("customer.id"), index=True)
    name: Mapped[str] = mapped_column(String(200))
    email: Mapped[str | None] = mapped_column(String(200))
    phone: Mapped[str | None] = mapped_column(String(60))


class Product(Model):
    __tablename__ = "product"
    id: Mapped[int] = mapped_column(primary_key=True)
    code: Mapped[str] = mapped_column(String(60), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    unit_price: Mapped[Decimal] = mapped_column(MONEY)
    purchase_price: Mapped[Decimal] = mapped_column(MONEY)
    tax_rate: Mapped[Decimal] = mapped_column(RATE, default=Decimal("20"))
    stock: Mapped[Decimal] = mapped_column(QTY, default=Decimal(0))


class Vendor(Model):
    __tablename__ = "vendor"
    __table_args__ = (UniqueConstraint("name"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    email: Mapped[str | None] = mapped_column(String(200))
    payment_terms_days: Mapped[int] = mapped_column(Integer, default=30)


def find_or_create_customer(
    name: str,
    *,
    now: datetime,
    email: str | None = None,
    phone: str | None = None,
    address: str | None = None,
) -> Customer:
    clean = (name or "").strip()
    if not clean:
        raise InvalidData([FieldError("customer", "a customer name is required")])
    customer = db.session.scalar(select(Customer).where(Customer.name == clean))
    if customer is None:
        customer = Customer(name=clean, email=email, phone=phone, address=address, created_at=now)
        db.session.add(customer)
        db.session.flush()
    return customer


def document_by_number(model: Any, number: str) -> Any:
    """The document of this kind with this number, or NotFound saying which."""
    found = db.session.scalar(select(model).where(model.number == number))
    if found is None:
        raise NotFound(f"no {model.__tablename__.replace('_', ' ')} {number!r}")
    return found


def customer_by_name(name: str) -> Customer:
    customer = db.session.scalar(select(Customer).where(Customer.name == name))
    if customer is None:
        raise NotFound(f"no customer named {name!r}")
    return customer


def find_or_create_vendor(name: str, email: str | None = None) -> Vendor:
    clean = (name or "").strip()
    if not clean:
        raise InvalidData([FieldError("vendor", "a vendor name is required")])
    vendor = db.session.scalar(select(Vendor).where(Vendor.name == clean))
    if vendor is None:
        vendor = Vendor(name=clean, email=email)
        db.session.add(vendor)
        db.session.flush()
    elif email and not vendor.email:
        vendor.email = email
    return vendor


def product_by_code(code: str, field: str = "product") -> Product:
    """A catalogue product by its code or, failing that, its exact name."""
    product = db.session.scalar(select(Product).where(Product.code == code)) or db.session.scalar(
        select(Product).where(Product.name == code)
    )
    if product is None:
        raise InvalidData([FieldError(field, f"unknown product {code!r}")])
    return product


# -- status changes with a reason (the `set_status` operation dispatches here) -----------------
StatusSetter = Any  # Callable[[str number, str status, str reason, OperationContext], dict]
STATUS_SETTERS: dict[str, StatusSetter] = {}


def status_setter(document_type: str) -> Any:
    """Register the function that sets the status of one document type."""

    def register(func: Any) -> Any:
        STATUS_SETTERS[document_type] = func
        return func

    return register
