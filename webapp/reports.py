"""Reports from the business queries: the aging of open invoices, the approvals waiting for a
decision, repair tickets breaching a service level, and the sales funnel.

Who may see which report (`REPORT_ROLES`, checked on each page): managers and directors see all
of them; accounting sees the aging report too. Others get 403.
"""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from flask import Blueprint, abort, render_template
from flask_babel import lazy_gettext as _l
from flask_login import current_user, login_required

from engine import Actor
from engine.business.purchasing import open_approvals
from engine.business.repairs import sla_breaches
from engine.business.sales import (
    AGING_BUCKETS,
    aging_report,
    open_quotes_awaiting_discount_approval,
    sales_funnel,
)

from .auth import current_actor
from .inbox import display_names, runtime

bp = Blueprint("reports", __name__, url_prefix="/reports")

MANAGEMENT = frozenset({"manager", "director"})
REPORT_ROLES: dict[str, frozenset[str]] = {
    "aging": MANAGEMENT | {"accounting"},
    "approvals": MANAGEMENT,
    "sla": MANAGEMENT,
    "funnel": MANAGEMENT,
}
REPORT_TITLES = {
    "aging": _l("Aging of open invoices"),
    "approvals": _l("Open approvals"),
    "sla": _l("Service level breaches"),
    "funnel": _l("Sales funnel"),
}
BUCKET_LABELS = {
    "current": _l("Not yet due"),
    "1-30": _l("1 to 30 days overdue"),
    "31-60": _l("31 to 60 days overdue"),
    "61-90": _l("61 to 90 days overdue"),
    ">90": _l("More than 90 days overdue"),
}
FUNNEL_STAGES = {
    "leads": _l("Leads captured"),
    "quoted": _l("Quoted"),
    "ordered": _l("Ordered"),
    "invoiced": _l("Invoiced"),
    "paid": _l("Paid"),
}
SLA_KINDS = {"dispatch": _l("Not dispatched within 4 hours"), "repair": _l("Not repaired within 5 days")}


def may_see(actor: Actor, report: str) -> bool:
    return bool(REPORT_ROLES[report] & actor.roles)


def _require(report: str) -> Actor:
    actor = current_actor()
    if not may_see(actor, report):
        abort(403)
    return actor


@bp.app_context_processor
def _menu() -> dict[str, Any]:
    """The reports the signed-in user may open, for the menu (no database query)."""
    if not current_user or not current_user.is_authenticated:
        return {"report_menu": []}
    actor = current_actor()
    return {"report_menu": [(r, REPORT_TITLES[r]) for r in REPORT_ROLES if may_see(actor, r)]}


@bp.get("/")
@login_required
def index() -> Any:
    actor = current_actor()
    reports = [(r, REPORT_TITLES[r]) for r in REPORT_ROLES if may_see(actor, r)]
    if not reports:
        abort(403)
    return render_template("reports/index.html", reports=reports)


@bp.get("/aging")
@login_required
def aging() -> Any:
    _require("aging")
    today = runtime().now().date()
    report = aging_report(today)
    summary = []
    grand: dict[str, Decimal] = {}
    for bucket in AGING_BUCKETS:
        totals: dict[str, Decimal] = {}
        for row in report[bucket]:
            totals[row["currency"]] = totals.get(row["currency"], Decimal(0)) + row["balance"]
            grand[row["currency"]] = grand.get(row["currency"], Decimal(0)) + row["balance"]
        summary.append((bucket, BUCKET_LABELS[bucket], len(report[bucket]), sorted(totals.items())))
    return render_template(
        "reports/aging.html",
        today=today,
        report=report,
        buckets=AGING_BUCKETS,
        labels=BUCKET_LABELS,
        summary=summary,
        grand=sorted(grand.items()),
        count=sum(len(rows) for rows in report.values()),
        title=REPORT_TITLES["aging"],
    )


@bp.get("/approvals")
@login_required
def approvals() -> Any:
    _require("approvals")
    now = runtime().now()
    quotes = [
        {**q, "waiting_since": _aware(q["waiting_since"])} for q in open_quotes_awaiting_discount_approval()
    ]
    purchases = open_approvals(now)
    people = {q["author"] for q in quotes} | {p.requested_by for p in purchases}
    return render_template(
        "reports/approvals.html",
        quotes=quotes,
        purchases=purchases,
        names=display_names(people),
        now=now,
        title=REPORT_TITLES["approvals"],
    )


def _aware(moment: datetime) -> datetime:
    """SQLite gives stored UTC moments back without their zone."""
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


@bp.get("/sla")
@login_required
def sla() -> Any:
    _require("sla")
    now = runtime().now()
    breaches = sla_breaches(now)
    return render_template(
        "reports/sla.html",
        breaches=breaches,
        kinds=SLA_KINDS,
        names=display_names({b.technician for b in breaches if b.technician}),
        now=now,
        title=REPORT_TITLES["sla"],
    )


@bp.get("/funnel")
@login_required
def funnel() -> Any:
    _require("funnel")
    counts = sales_funnel()
    leads = counts.get("leads", 0)
    stages = []
    previous = None
    for key, label in FUNNEL_STAGES.items():
        n = counts.get(key, 0)
        stages.append(
            {
                "key": key,
                "label": label,
                "count": n,
                "of_leads": (n / leads) if leads else None,
                "of_previous": (n / previous) if previous else None,
            }
        )
        previous = n
    return render_template("reports/funnel.html", stages=stages, title=REPORT_TITLES["funnel"])
