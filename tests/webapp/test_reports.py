"""Reports on the real back office: the aging of open invoices by days overdue, the approvals
waiting for a decision, service level breaches of repair tickets, and the sales funnel."""

from __future__ import annotations

import re
from datetime import timedelta
from html import escape
from typing import Any

import pytest

from engine import Engine
from tests.webapp.test_approvals import invoiced, quoted, requested, signed_in, staffed
from tests.webapp.test_documents import repair_intake


@pytest.fixture
def web(office: Engine) -> Any:
    return staffed()


def bucket(html: str, key: str) -> str:
    attribute = re.escape(escape(key))
    match = re.search(
        rf'<section class="card bucket" id="[^"]+" data-bucket="{attribute}">(.*?)</section>', html, re.S
    )
    assert match, f"no bucket {key}"
    return match.group(1)


def summary_count(html: str, key: str) -> int:
    match = re.search(rf'<tr data-bucket="{re.escape(escape(key))}">.*?data-n="(\d+)"', html, re.S)
    assert match, f"no summary row for {key}"
    return int(match.group(1))


def test_aging_groups_open_invoices_by_days_overdue(web, office, clock):
    """Invoices are due 14 days after issue; the report is read 120 days after the first."""
    start = clock.current
    numbers = {}
    for days, company in ((0, "Oldest Ltd"), (60, "Middle Ltd"), (100, "Recent Ltd"), (120, "Fresh Ltd")):
        clock.current = start + timedelta(days=days)
        numbers[company] = invoiced(office, clock, company=company)[1]
    # 106, 46 and 6 days overdue, and one not yet due
    alex = signed_in(web, "alex")
    html = alex.page("/reports/aging")

    assert numbers["Oldest Ltd"] in bucket(html, ">90")
    assert numbers["Middle Ltd"] in bucket(html, "31-60")
    assert numbers["Recent Ltd"] in bucket(html, "1-30")
    assert numbers["Fresh Ltd"] in bucket(html, "current")
    assert "None." in bucket(html, "61-90")
    assert [summary_count(html, k) for k in ("current", "1-30", "31-60", "61-90", ">90")] == [1, 1, 1, 0, 1]
    assert "€61,920.00" in html  # 4 x 15,480.00 open in all
    assert f'href="/documents/invoices/{numbers["Oldest Ltd"]}"' in html

    assert alex.get("/reports/approvals").status_code == 403  # accounting: the aging report only
    assert alex.get("/reports/sla").status_code == 403
    assert signed_in(web, "sally").get("/reports/aging").status_code == 403
    assert signed_in(web, "mona").get("/reports/aging").status_code == 200


def test_open_approvals_report(web, office):
    quoted(office, discount="15")
    requested(office, "sally", ("LAP-14", 1, "1150.00"))
    html = signed_in(web, "mona").page("/reports/approvals")
    quotes = html[html.index('data-report="quotes"') : html.index('data-report="purchases"')]
    purchases = html[html.index('data-report="purchases"') :]
    assert "Q-2026-0001" in quotes and "Sally Sales" in quotes and "15 %" in quotes
    assert "PR-2026-0001" in purchases and "€1,150.00" in purchases and "Manager" in purchases
    assert signed_in(web, "cora").get("/reports/approvals").status_code == 403


def test_sla_report_lists_tickets_not_dispatched_in_time(web, office, clock):
    repair_intake(office, clock)
    clock.current += timedelta(hours=5)
    html = signed_in(web, "mona").page("/reports/sla")
    assert 'data-kind="dispatch"' in html and "RT-2026-0001" in html
    assert "Not dispatched within 4 hours" in html
    assert 'data-kind="repair"' not in html


def test_sales_funnel_counts_each_stage(web, office, clock):
    invoiced(office, clock)
    quoted(office, discount="0", company="Baltic Amber")
    html = signed_in(web, "dora").page("/reports/funnel")
    counts = dict(re.findall(r'<tr data-stage="(\w+)">.*?data-n="(\d+)"', html, re.S))
    assert counts == {"leads": "2", "quoted": "2", "ordered": "1", "invoiced": "1", "paid": "0"}
    assert "50%" in html  # ordered: half of the leads


def test_reports_menu_and_index(web, office):
    html = signed_in(web, "mona").page("/reports/")
    for url in ("/reports/aging", "/reports/approvals", "/reports/sla", "/reports/funnel"):
        assert url in html
    alex = signed_in(web, "alex").page("/inbox")
    assert "/reports/aging" in alex and "/reports/funnel" not in alex
    assert signed_in(web, "sally").get("/reports/").status_code == 403
