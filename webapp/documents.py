"""Document pages: lists and details of customers, leads, quotes, sales orders, invoices, repair
tickets, purchase requests and purchase orders — lines, totals, related documents, the document's
history and the process instance that handles it — and registering a payment on an invoice.

Who may see what (`READERS`, checked on every list, detail page and action, not only in menus):

| documents                    | roles                                                               |
|------------------------------|---------------------------------------------------------------------|
| leads                        | sales, order_entry, accounting, manager, director; marketing        |
| quotes, invoices             | sales, order_entry, accounting, manager, director                   |
| sales orders                 | the same, and inventory (it ships them)                             |
| repair tickets               | dispatcher, technician, customer_service, receptionist, manager,    |
|                              | director; inventory (it issues their parts)                         |
| purchase requests and orders | purchasing, inventory, accounting, manager, director; and whoever   |
|                              | requested them (their own requests and the orders made for them)    |
| customers                    | whoever sees sales documents or repair tickets, and marketing       |

`admin` sees every document. Anybody else gets 403 — on a list (the purchase lists show a
requester only their own documents) and on a detail page. Related documents a user may not see
are not linked. Registering a payment needs the `accounting` role.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date
from decimal import Decimal, InvalidOperation
from typing import Any

from flask import Blueprint, abort, flash, redirect, render_template, request, url_for
from flask_babel import format_currency, format_decimal
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from flask_login import current_user, login_required
from sqlalchemy import or_, select

from engine import Actor
from engine.business import repairs, sales
from engine.business.common import Contact, Customer, Vendor, history
from engine.business.purchasing import (
    REQUEST_STATUSES,
    GoodsReceipt,
    PurchaseOrder,
    PurchaseRequest,
    VendorBill,
)
from engine.business.repairs import RepairTicket
from engine.business.sales import (
    LEAD_STATUSES,
    QUOTE_STATUSES,
    Delivery,
    Invoice,
    Lead,
    Quote,
    SalesOrder,
)
from engine.db import db
from engine.errors import EngineError, InvalidData, InvalidState, NotFound, NotWaiting
from engine.models import HumanTask

from .auth import current_actor
from .inbox import display_names, runtime
from .instances import may_see_instance
from .tasks import START_LABELS, humanize, may_start

bp = Blueprint("documents", __name__, url_prefix="/documents")

PAGE_SIZE = 50
RELATED_LIMIT = 20

# -- who may see what (see the module docstring) ---------------------------------------------------------
SALES_READERS = frozenset({"sales", "order_entry", "accounting", "manager", "director"})
REPAIR_READERS = frozenset(
    {"dispatcher", "technician", "customer_service", "receptionist", "manager", "director"}
)
PURCHASE_READERS = frozenset({"purchasing", "inventory", "accounting", "manager", "director"})
READERS: dict[str, frozenset[str]] = {
    "customers": SALES_READERS | REPAIR_READERS | {"marketing"},
    "leads": SALES_READERS | {"marketing"},
    "quotes": SALES_READERS,
    "orders": SALES_READERS | {"inventory"},
    "invoices": SALES_READERS,
    "repair-tickets": REPAIR_READERS | {"inventory"},
    "purchase-requests": PURCHASE_READERS,
    "purchase-orders": PURCHASE_READERS,
}
SEES_EVERY_DOCUMENT = "admin"
REQUESTER_SEES_OWN = frozenset({"purchase-requests", "purchase-orders"})
PAYMENT_ROLES = frozenset({"accounting"})
OPEN_INVOICE_STATES = ("open", "handed_over")


@dataclass(frozen=True)
class Kind:
    slug: str  # in the URL: /documents/<slug>
    document_type: str  # as a task's document_type and in the document history
    title: Any  # lazy plural
    singular: Any  # lazy
    model: Any
    statuses: tuple[str, ...]
    party: str | None = None  # "customer" or "vendor": whose name is listed beside the number
    start: str | None = None  # the process its list page starts


KINDS: dict[str, Kind] = {
    k.slug: k
    for k in (
        Kind("customers", "customer", _l("Customers"), _l("Customer"), Customer, ()),
        Kind(
            "leads", "lead", _l("Leads"), _l("Lead"), Lead, LEAD_STATUSES, "customer", start="lead_to_invoice"
        ),
        Kind("quotes", "quote", _l("Quotes"), _l("Quote"), Quote, QUOTE_STATUSES, "customer"),
        Kind(
            "orders",
            "sales_order",
            _l("Sales orders"),
            _l("Sales order"),
            SalesOrder,
            ("open", "partially_delivered", "delivered", "invoiced"),
            "customer",
        ),
        Kind(
            "invoices",
            "invoice",
            _l("Invoices"),
            _l("Invoice"),
            Invoice,
            ("open", "paid", "handed_over", "written_off"),
            "customer",
        ),
        Kind(
            "repair-tickets",
            "repair_ticket",
            _l("Repair tickets"),
            _l("Repair ticket"),
            RepairTicket,
            repairs.STATUSES,
            "customer",
            start="repair_ticket",
        ),
        Kind(
            "purchase-requests",
            "purchase_request",
            _l("Purchase requests"),
            _l("Purchase request"),
            PurchaseRequest,
            REQUEST_STATUSES,
            start="purchase_approval",
        ),
        Kind(
            "purchase-orders",
            "purchase_order",
            _l("Purchase orders"),
            _l("Purchase order"),
            PurchaseOrder,
            ("open", "partially_received", "received", "billed"),
            "vendor",
        ),
    )
}
SLUG_OF_TYPE = {k.document_type: k.slug for k in KINDS.values()}

# what the text filter of each list searches
SEARCH: dict[str, tuple[Any, ...]] = {
    "customers": (Customer.name, Customer.email, Customer.phone),
    "leads": (Lead.number, Customer.name, Lead.interest),
    "quotes": (Quote.number, Customer.name),
    "orders": (SalesOrder.number, Customer.name, SalesOrder.customer_reference),
    "invoices": (Invoice.number, Customer.name, Invoice.source_number),
    "repair-tickets": (RepairTicket.number, Customer.name, RepairTicket.product, RepairTicket.serial),
    "purchase-requests": (PurchaseRequest.number, PurchaseRequest.requested_by, PurchaseRequest.reason),
    "purchase-orders": (PurchaseOrder.number, Vendor.name, PurchaseOrder.vendor_reference),
}

STATUS_LABELS = {
    "open": _l("open"),
    "qualified": _l("qualified"),
    "unqualified": _l("unqualified"),
    "cold": _l("cold"),
    "converted": _l("converted"),
    "draft": _l("draft"),
    "sent": _l("sent"),
    "accepted": _l("accepted"),
    "lost": _l("lost"),
    "expired": _l("expired"),
    "partially_delivered": _l("partially delivered"),
    "delivered": _l("delivered"),
    "invoiced": _l("invoiced"),
    "paid": _l("paid"),
    "handed_over": _l("handed over to collection"),
    "written_off": _l("written off"),
    "dispatched": _l("dispatched"),
    "diagnosed": _l("diagnosed"),
    "waiting_parts": _l("waiting for parts"),
    "repaired": _l("repaired"),
    "handed_back": _l("handed back"),
    "closed": _l("closed"),
    "submitted": _l("submitted"),
    "approved": _l("approved"),
    "rejected": _l("rejected"),
    "withdrawn": _l("withdrawn"),
    "ordered": _l("ordered"),
    "partially_received": _l("partially received"),
    "received": _l("received"),
    "billed": _l("billed"),
    "shipped": _l("shipped"),
    "booked": _l("booked"),
    "matched": _l("matched"),
    "mismatch": _l("mismatch"),
    "superseded": _l("superseded"),
    "scheduled": _l("payment scheduled"),
}
ACTION_LABELS = {
    "created": _l("Created"),
    "revised": _l("Revised"),
    "sent": _l("Sent"),
    "discount_approved": _l("Discount approved"),
    "discount_rejected": _l("Discount rejected"),
    "accepted": _l("Accepted"),
    "approved": _l("Approved"),
    "rejected": _l("Rejected"),
    "submitted": _l("Submitted"),
    "status_changed": _l("Status changed"),
    "qualified": _l("Qualified"),
    "contact_logged": _l("Contact logged"),
    "paid": _l("Paid in full"),
    "partially_paid": _l("Partly paid"),
    "booked": _l("Booked"),
    "dunning_letter": _l("Payment reminder"),
    "collection_action": _l("Collection measure"),
    "credit_hold": _l("Put on credit hold"),
    "shipped": _l("Shipped"),
    "invoiced": _l("Invoiced"),
}


# task ids whose completion is a decision on the document, or a comment worth showing beside it
COMMENTED_TASKS = {
    "approve_discount": "decision",
    "approve_discount_director": "decision",
    "approve_manager": "decision",
    "approve_director": "decision",
    "revise_request": "revision",
    "prepare_quote": "quote",
}
DECISION_LABELS = {"approve": _l("Approved"), "reject": _l("Rejected")}
DECIDED_KINDS = frozenset({"quotes", "purchase-requests"})


# -- access --------------------------------------------------------------------------------------------
def may_read(actor: Actor, slug: str) -> bool:
    """May `actor` see documents of this kind at all (their role allows it)?"""
    return SEES_EVERY_DOCUMENT in actor.roles or bool(READERS.get(slug, frozenset()) & actor.roles)


def may_list(actor: Actor, slug: str) -> bool:
    """May `actor` open this list (the purchase lists show a requester their own documents)?"""
    return may_read(actor, slug) or slug in REQUESTER_SEES_OWN


def may_read_document(actor: Actor, slug: str, document: Any) -> bool:
    if may_read(actor, slug):
        return True
    if slug == "purchase-requests":
        return bool(document.requested_by == actor.username)
    if slug == "purchase-orders" and document.request_id is not None:
        requester = db.session.scalar(
            select(PurchaseRequest.requested_by).where(PurchaseRequest.id == document.request_id)
        )
        return requester == actor.username
    return False


def document_url(document_type: str | None, key: Any) -> str | None:
    """The page of a document by its type (as tasks name it) and number, if the user may see it."""
    slug = SLUG_OF_TYPE.get(document_type or "")
    if slug is None or key in (None, "") or not current_user.is_authenticated:
        return None
    if not may_read(current_actor(), slug) and slug not in REQUESTER_SEES_OWN:
        return None
    return url_for("documents.detail", slug=slug, key=str(key))


@bp.app_context_processor
def _menu() -> dict[str, Any]:
    """The document lists the signed-in user may open, for the menu (no database query)."""
    if not current_user or not current_user.is_authenticated:
        return {"document_menu": [], "document_url": document_url}
    actor = current_actor()
    menu = [(k.slug, k.title) for k in KINDS.values() if may_read(actor, k.slug)]
    if not any(slug in REQUESTER_SEES_OWN for slug, _title in menu):
        menu.append(("purchase-requests", _l("My purchase requests")))
    return {"document_menu": menu, "document_url": document_url}


# -- formatting ----------------------------------------------------------------------------------------
@bp.app_template_filter("money")
def money_filter(value: Any, currency: str | None = None) -> str:
    """An amount in the user's locale, with its currency when known; — when there is none."""
    if value is None or value == "":
        return "—"
    try:
        amount = Decimal(str(value))
    except InvalidOperation:
        return str(value)
    if currency:
        return str(format_currency(amount, currency))
    return str(format_decimal(amount, format="#,##0.00"))


@bp.app_template_filter("quantity")
def quantity_filter(value: Any) -> str:
    if value is None or value == "":
        return "—"
    try:
        return str(format_decimal(Decimal(str(value))))
    except InvalidOperation:
        return str(value)


@bp.app_template_filter("status_label")
def status_label(value: Any) -> str:
    label = STATUS_LABELS.get(str(value)) if value is not None else None
    return str(label) if label is not None else humanize(value)


def document_history(document_type: str, document_id: int) -> list[dict[str, Any]]:
    """The document's own history (common.history), readable: who, when, what, and why."""
    events = history(document_type, document_id)
    names = display_names({e.actor for e in events})
    return [
        {
            "at": e.at,
            "actor": names.get(e.actor, e.actor),
            "action": e.action,
            "label": ACTION_LABELS.get(e.action) or humanize(e.action),
            "detail": {k: v for k, v in (e.detail or {}).items() if v not in (None, "", [], {})},
        }
        for e in events
    ]


def instance_decisions(instance_id: int) -> list[dict[str, Any]]:
    """Approvers' decisions with their reasons, and the revisions between them, in the process
    instance of a document (from its audit trail): they are there the moment they are made."""
    events = runtime().audit_trail(instance_id)
    names = display_names({e.actor for e in events})
    titles = dict(
        db.session.execute(
            select(HumanTask.task_id, HumanTask.title).where(HumanTask.instance_id == instance_id)
        )
        .tuples()
        .all()
    )
    out = []
    for e in events:
        detail = e.detail or {}
        kind = COMMENTED_TASKS.get(str(detail.get("spec")))
        if e.event != "task_completed" or kind is None:
            continue
        data = detail.get("data") or {}
        decision = data.get("decision") if kind == "decision" else None
        said = "" if kind == "quote" else (data.get("reason") or data.get("revision_comment") or "")
        out.append(
            {
                "at": e.at,
                "actor": names.get(e.actor, e.actor),
                "title": titles.get(e.task_id or "", ""),
                "kind": kind,
                "decision": decision,
                "decision_label": DECISION_LABELS.get(str(decision)) if decision else None,
                "said": said,
            }
        )
    return out


# -- lists ---------------------------------------------------------------------------------------------
def _like(text: str) -> str:
    return "%" + text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"


def _list_rows(
    kind: Kind, status: str | None, text: str | None, before: int | None, own: str | None
) -> tuple[list[tuple[Any, str | None]], bool]:
    """One page of (document, customer or vendor name), newest first; and whether more follow."""
    model = kind.model
    if kind.party == "customer":
        q = select(model, Customer.name).join(Customer, Customer.id == model.customer_id)
    elif kind.party == "vendor":
        q = select(model, Vendor.name).join(Vendor, Vendor.id == model.vendor_id)
    else:
        q = select(model)
    if status:
        q = q.where(model.status == status)
    if text:
        pattern = _like(text)
        q = q.where(or_(*(column.ilike(pattern, escape="\\") for column in SEARCH[kind.slug])))
    if own is not None:  # a requester without a purchasing role: their own documents only
        mine = select(PurchaseRequest.id).where(PurchaseRequest.requested_by == own)
        q = q.where(
            PurchaseRequest.requested_by == own if model is PurchaseRequest else model.request_id.in_(mine)
        )
    if before is not None:
        q = q.where(model.id < before)
    rows = db.session.execute(q.order_by(model.id.desc()).limit(PAGE_SIZE + 1)).all()
    more = len(rows) > PAGE_SIZE
    return [(row[0], row[1] if len(row) > 1 else None) for row in rows[:PAGE_SIZE]], more


def _kind_or_404(slug: str) -> Kind:
    kind = KINDS.get(slug)
    if kind is None:
        abort(404)
    return kind


@bp.get("/")
@login_required
def index() -> Any:
    actor = current_actor()
    kinds = [k for k in KINDS.values() if may_list(actor, k.slug)]
    readable = {k.slug: may_read(actor, k.slug) for k in kinds}
    return render_template("documents/index.html", kinds=kinds, readable=readable)


def _canonical(slug: str) -> str | None:
    """The list's name for `slug` when it is another spelling of one: `invoice`, `repair_ticket`,
    `sales_order` (the document types tasks name), `repair_tickets`."""
    if slug in KINDS:
        return None
    for candidate in (slug.replace("_", "-"), SLUG_OF_TYPE.get(slug.replace("-", "_"))):
        if candidate in KINDS:
            return candidate
    return None


@bp.get("/<slug>")
@login_required
def listing(slug: str) -> Any:
    canonical = _canonical(slug)
    if canonical is not None:
        args: dict[str, Any] = dict(request.args.items())
        return redirect(url_for("documents.listing", slug=canonical, **args))
    kind = _kind_or_404(slug)
    actor = current_actor()
    if not may_list(actor, slug):
        abort(403)
    own = None if may_read(actor, slug) else actor.username
    status = request.args.get("status") or None
    if status not in kind.statuses:
        status = None
    text = (request.args.get("q") or "").strip()[:100] or None
    before_arg = request.args.get("before") or ""
    before = int(before_arg) if before_arg.isdigit() and len(before_arg) <= 12 else None
    rows, more = _list_rows(kind, status, text, before, own)
    filters: dict[str, Any] = {k: v for k, v in (("status", status), ("q", text)) if v}
    next_url = url_for("documents.listing", slug=slug, before=rows[-1][0].id, **filters) if more else None
    first_url = url_for("documents.listing", slug=slug, **filters) if before is not None else None
    people = set()
    for document, _party in rows:
        for attribute in ("requested_by", "owner", "author", "technician"):
            value = getattr(document, attribute, None)
            if value:
                people.add(value)
    start = kind.start if kind.start and may_start(actor, kind.start) else None
    return render_template(
        "documents/list.html",
        kind=kind,
        rows=rows,
        status=status,
        text=text or "",
        own_only=own is not None,
        names=display_names(people),
        next_url=next_url,
        first_url=first_url,
        start=start,
        start_label=START_LABELS.get(start or "") if start else None,
        today=runtime().now().date(),
    )


# -- details -------------------------------------------------------------------------------------------
def _one(model: Any, number: str) -> Any:
    document = db.session.scalar(select(model).where(model.number == number))
    if document is None:
        raise NotFound(f"no {model.__tablename__} {number!r}")
    return document


def _link(actor: Actor, slug: str, key: Any, label: str | None = None) -> dict[str, Any] | None:
    if key in (None, "") or not may_read(actor, slug):
        return None
    return {
        "kind": KINDS[slug].singular,
        "label": label or str(key),
        "url": url_for("documents.detail", slug=slug, key=str(key)),
    }


def _links(*links: dict[str, Any] | None) -> list[dict[str, Any]]:
    return [link for link in links if link is not None]


def _customer_context(actor: Actor, key: str) -> dict[str, Any]:
    if not key.isdigit():
        raise NotFound(f"no customer {key!r}")
    customer = db.session.get(Customer, int(key))
    if customer is None:
        raise NotFound(f"no customer {key!r}")
    related: list[tuple[Any, str, list[Any]]] = []
    for slug, model in (
        ("leads", Lead),
        ("quotes", Quote),
        ("orders", SalesOrder),
        ("invoices", Invoice),
        ("repair-tickets", RepairTicket),
    ):
        if may_read(actor, slug):
            documents = db.session.scalars(
                select(model)
                .where(model.customer_id == customer.id)
                .order_by(model.id.desc())
                .limit(RELATED_LIMIT)
            ).all()
            related.append((KINDS[slug].title, slug, list(documents)))
    contacts = db.session.scalars(
        select(Contact).where(Contact.customer_id == customer.id).order_by(Contact.id)
    ).all()
    return {
        "document": customer,
        "title": customer.name,
        "number": None,
        "contacts": contacts,
        "related": related,
        "links": [],
    }


def _lead_context(actor: Actor, key: str) -> dict[str, Any]:
    lead: Lead = _one(Lead, key)
    quotes = db.session.scalars(select(Quote).where(Quote.lead_id == lead.id).order_by(Quote.id)).all()
    return {
        "document": lead,
        "title": lead.number,
        "number": lead.number,
        "customer": lead.customer,
        "links": _links(
            _link(actor, "customers", lead.customer_id, lead.customer.name),
            *(_link(actor, "quotes", q.number) for q in quotes),
        ),
    }


def _quote_context(actor: Actor, key: str) -> dict[str, Any]:
    quote: Quote = _one(Quote, key)
    earlier: dict[int, list[Any]] = {}
    for line in quote.all_lines:
        if line.revision != quote.revision:
            earlier.setdefault(line.revision, []).append(line)
    orders = db.session.scalars(select(SalesOrder).where(SalesOrder.quote_id == quote.id)).all()
    lines = quote.lines
    list_net = sum((sales.money(line.qty * line.unit_price) for line in lines), Decimal(0))
    return {
        "document": quote,
        "title": quote.number,
        "number": quote.number,
        "customer": quote.customer,
        "lines": lines,
        "earlier_revisions": sorted(earlier.items(), reverse=True),
        "list_net": list_net,
        "discount_amount": list_net - quote.total_net,
        "links": _links(
            _link(actor, "customers", quote.customer_id, quote.customer.name),
            _link(actor, "leads", quote.lead.number if quote.lead else None),
            *(_link(actor, "orders", o.number) for o in orders),
        ),
    }


def _order_context(actor: Actor, key: str) -> dict[str, Any]:
    order: SalesOrder = _one(SalesOrder, key)
    deliveries = db.session.scalars(
        select(Delivery).where(Delivery.order_id == order.id).order_by(Delivery.id)
    ).all()
    invoices = db.session.scalars(
        select(Invoice).where(Invoice.sales_order_id == order.id).order_by(Invoice.id)
    ).all()
    return {
        "document": order,
        "title": order.number,
        "number": order.number,
        "customer": order.customer,
        "deliveries": deliveries,
        "invoices": invoices,
        "links": _links(
            _link(actor, "customers", order.customer_id, order.customer.name),
            _link(actor, "quotes", order.quote.number if order.quote else None),
            *(_link(actor, "invoices", i.number) for i in invoices),
        ),
    }


def _invoice_context(actor: Actor, key: str) -> dict[str, Any]:
    invoice: Invoice = _one(Invoice, key)
    today = runtime().now().date()
    source = None
    if invoice.source_type == "repair_ticket":
        source = _link(actor, "repair-tickets", invoice.source_number)
    elif invoice.sales_order is not None:
        source = _link(actor, "orders", invoice.sales_order.number)
    payable = invoice.status in OPEN_INVOICE_STATES and invoice.balance > 0
    return {
        "document": invoice,
        "title": invoice.number,
        "number": invoice.number,
        "customer": invoice.customer,
        "payments": invoice.payments,
        "days_overdue": (today - invoice.due_date).days if payable else None,
        "may_register_payment": payable and bool(PAYMENT_ROLES & actor.roles),
        "links": _links(_link(actor, "customers", invoice.customer_id, invoice.customer.name), source),
    }


def _ticket_context(actor: Actor, key: str) -> dict[str, Any]:
    ticket: RepairTicket = _one(RepairTicket, key)
    customer = db.session.get(Customer, ticket.customer_id)
    invoices = db.session.scalars(
        select(Invoice)
        .where(Invoice.source_type == "repair_ticket", Invoice.source_number == ticket.number)
        .order_by(Invoice.id)
    ).all()
    return {
        "document": ticket,
        "title": ticket.number,
        "number": ticket.number,
        "customer": customer,
        "links": _links(
            _link(actor, "customers", ticket.customer_id, customer.name if customer else None),
            *(_link(actor, "invoices", i.number) for i in invoices),
        ),
    }


def _request_context(actor: Actor, key: str) -> dict[str, Any]:
    pr: PurchaseRequest = _one(PurchaseRequest, key)
    orders = db.session.scalars(
        select(PurchaseOrder).where(PurchaseOrder.request_id == pr.id).order_by(PurchaseOrder.id)
    ).all()
    # the requester sees the orders made for their request, even without a purchasing role
    sees_orders = may_read(actor, "purchase-orders") or pr.requested_by == actor.username
    return {
        "document": pr,
        "title": pr.number,
        "number": pr.number,
        "links": [_own_link("purchase-orders", o.number) for o in orders] if sees_orders else [],
    }


def _own_link(slug: str, number: str) -> dict[str, Any]:
    return {
        "kind": KINDS[slug].singular,
        "label": number,
        "url": url_for("documents.detail", slug=slug, key=number),
    }


def _purchase_order_context(actor: Actor, key: str) -> dict[str, Any]:
    order: PurchaseOrder = _one(PurchaseOrder, key)
    vendor = db.session.get(Vendor, order.vendor_id)
    pr = db.session.get(PurchaseRequest, order.request_id) if order.request_id else None
    receipts = db.session.scalars(
        select(GoodsReceipt).where(GoodsReceipt.order_id == order.id).order_by(GoodsReceipt.id)
    ).all()
    bills = db.session.scalars(
        select(VendorBill).where(VendorBill.order_id == order.id).order_by(VendorBill.id)
    ).all()
    request_link = None
    if pr is not None and (may_read(actor, "purchase-requests") or pr.requested_by == actor.username):
        request_link = _own_link("purchase-requests", pr.number)
    return {
        "document": order,
        "title": order.number,
        "number": order.number,
        "vendor": vendor,
        "receipts": receipts,
        "bills": bills,
        "links": _links(request_link),
    }


PEOPLE_ATTRIBUTES = ("author", "owner", "captured_by", "requested_by", "decided_by", "technician")
CONTEXTS = {
    "customers": _customer_context,
    "leads": _lead_context,
    "quotes": _quote_context,
    "orders": _order_context,
    "invoices": _invoice_context,
    "repair-tickets": _ticket_context,
    "purchase-requests": _request_context,
    "purchase-orders": _purchase_order_context,
}


def document_context(actor: Actor, slug: str, key: str) -> dict[str, Any]:
    """Everything a document's page shows: the document, its parts, related links, its history
    and its process instance (linked when `actor` may see it). Raises NotFound."""
    kind = KINDS[slug]
    context = CONTEXTS[slug](actor, key)
    document = context["document"]
    instance_url = None
    instance_id = getattr(document, "instance_id", None)
    if instance_id:
        try:
            if may_see_instance(actor, runtime().instance(instance_id)):
                instance_url = url_for("instances.detail", instance_id=instance_id)
        except NotFound:
            instance_url = None
    people = {getattr(document, a, None) for a in PEOPLE_ATTRIBUTES}
    people |= {p.booked_by for p in context.get("payments", [])}
    people |= {r.received_by for r in context.get("receipts", [])}
    if isinstance(document, Lead):
        people |= {entry.actor for entry in document.contact_log}
    context.update(
        names=display_names({p for p in people if p}),
        kind=kind,
        slug=slug,
        instance_id=instance_id,
        instance_url=instance_url,
        history=document_history(kind.document_type, document.id),
        decisions=instance_decisions(instance_id) if instance_id and slug in DECIDED_KINDS else [],
        today=runtime().now().date(),
    )
    return context


@bp.get("/<slug>/<key>")
@login_required
def detail(slug: str, key: str) -> Any:
    canonical = _canonical(slug)
    if canonical is not None:
        return redirect(url_for("documents.detail", slug=canonical, key=key))
    _kind_or_404(slug)
    actor = current_actor()
    if not may_list(actor, slug):
        abort(403)
    context = document_context(actor, slug, key)  # NotFound -> 404
    if not may_read_document(actor, slug, context["document"]):
        abort(403)
    return render_template("documents/detail.html", payment=_payment_form(), **context)


# -- registering a payment ---------------------------------------------------------------------------------
@dataclass
class PaymentForm:
    amount: str = ""
    paid_on: str = ""
    reference: str = ""
    errors: dict[str, str] | None = None
    message: str | None = None


def _payment_form(**values: Any) -> PaymentForm:
    form = PaymentForm(**values)
    if not form.paid_on:
        form.paid_on = runtime().now().date().isoformat()
    return form


_SPACES = re.compile(r"[\s\u00a0\u202f']")
_PLAIN_NUMBER = re.compile(r"^[+-]?(\d+(\.\d*)?|\.\d+)$")
_MORE_THAN_BALANCE = re.compile(r"is more than the open balance")
_TOO_MANY_DECIMALS = re.compile(r"^at most 2 decimals")
_ALREADY_BOOKED = re.compile(r"is already booked on")


def parse_amount(text: str) -> Decimal | None:
    """`1 234,50`, `1.234,50`, `1,234.50` or `1234.5` as a Decimal; None when it is not a number.
    With both a comma and a dot, the one that comes last is the decimal sign."""
    compact = _SPACES.sub("", text)
    if "," in compact and "." in compact:
        decimal_sign = "," if compact.rindex(",") > compact.rindex(".") else "."
        grouping = "." if decimal_sign == "," else ","
        compact = compact.replace(grouping, "").replace(decimal_sign, ".")
    elif compact.count(",") == 1:
        compact = compact.replace(",", ".")
    if not _PLAIN_NUMBER.match(compact):
        return None
    try:
        value = Decimal(compact)
    except InvalidOperation:
        return None
    return value if value.is_finite() else None


def _payment_errors(amount_text: str, paid_on: str, reference: str) -> dict[str, str]:
    errors: dict[str, str] = {}
    amount = parse_amount(amount_text) if amount_text else None
    if not amount_text:
        errors["amount"] = _("Enter the amount received.")
    elif amount is None:
        errors["amount"] = _("Enter a number, like 1250.00.")
    elif amount <= 0:
        errors["amount"] = _("The amount must be more than zero.")
    if not paid_on:
        errors["paid_on"] = _("Enter the day the money arrived.")
    else:
        try:
            date.fromisoformat(paid_on)
        except ValueError:
            errors["paid_on"] = _("Enter a date.")
    if not reference:
        errors["reference"] = _("Enter the bank reference.")
    elif len(reference) > 200:
        errors["reference"] = _("At most 200 characters.")
    return errors


def _engine_payment_errors(invoice: Invoice, exc: InvalidData) -> tuple[dict[str, str], list[str]]:
    """The engine's refusal next to the fields it names, said the way the page speaks."""
    fields: dict[str, str] = {}
    general: list[str] = []
    for error in exc.errors:
        name = error.field
        if name == "amount" and _MORE_THAN_BALANCE.search(error.message):
            fields["amount"] = _(
                "More than the open balance of %(balance)s.",
                balance=format_currency(invoice.balance, invoice.currency),
            )
        elif name == "amount" and _TOO_MANY_DECIMALS.match(error.message):
            fields["amount"] = _("At most two decimals.")
        elif name == "reference" and _ALREADY_BOOKED.search(error.message):
            fields["reference"] = _("This reference is already booked on this invoice with another amount.")
        elif name in ("amount", "paid_on", "reference"):
            fields[name] = error.message
        else:
            general.append(str(error))
    return fields, general


@bp.post("/invoices/<key>/payments")
@login_required
def register_payment(key: str) -> Any:
    actor = current_actor()
    if not PAYMENT_ROLES & actor.roles:
        abort(403)
    context = document_context(actor, "invoices", key)  # NotFound -> 404
    invoice: Invoice = context["document"]
    if not may_read_document(actor, "invoices", invoice):
        abort(403)
    amount_text = (request.form.get("amount") or "").strip()[:40]
    paid_on = (request.form.get("paid_on") or "").strip()[:20]
    reference = (request.form.get("reference") or "").strip()
    values = {"amount": amount_text, "paid_on": paid_on, "reference": reference[:300]}

    def refused(status: int, errors: dict[str, str] | None = None, message: str | None = None) -> Any:
        form = _payment_form(**values, errors=errors or {}, message=message)
        fresh = document_context(actor, "invoices", key)
        return render_template("documents/detail.html", payment=form, **fresh), status

    if invoice.status not in OPEN_INVOICE_STATES or invoice.balance <= 0:
        return refused(
            409,
            message=_(
                "%(number)s is not waiting for a payment: it is %(status)s.",
                number=invoice.number,
                status=status_label(invoice.status),
            ),
        )
    errors = _payment_errors(amount_text, paid_on, reference)
    if errors:
        return refused(422, errors)
    amount = parse_amount(amount_text)
    assert amount is not None
    payload = {
        "invoice_number": invoice.number,
        "amount": str(amount),
        "paid_on": paid_on,
        "reference": reference,
    }
    try:
        runtime().correlate_message("payment_received", {"invoice_number": invoice.number}, payload, actor)
    except InvalidData as exc:
        fields, general = _engine_payment_errors(invoice, exc)
        return refused(422, fields, "; ".join(general) or None)
    except NotWaiting:
        db.session.expire_all()
        current = db.session.get(Invoice, invoice.id)
        return refused(
            409,
            message=_(
                "%(number)s is not waiting for a payment: it is %(status)s.",
                number=invoice.number,
                status=status_label(current.status if current else invoice.status),
            ),
        )
    except (InvalidState, EngineError) as exc:
        return refused(409, message=exc.message)
    db.session.expire_all()
    booked = db.session.get(Invoice, invoice.id)
    assert booked is not None
    if booked.status == "paid":
        flash(
            _(
                "%(amount)s booked on %(number)s. The invoice is paid in full.",
                amount=format_currency(amount, booked.currency),
                number=booked.number,
            ),
            "success",
        )
    else:
        flash(
            _(
                "%(amount)s booked on %(number)s. Still open: %(balance)s.",
                amount=format_currency(amount, booked.currency),
                number=booked.number,
                balance=format_currency(booked.balance, booked.currency),
            ),
            "success",
        )
    return redirect(url_for("documents.detail", slug="invoices", key=booked.number))
