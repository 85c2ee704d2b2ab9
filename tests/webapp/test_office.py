"""The real back office through the web app: a purchase request started from its form, the
four-eyes rule on its approval, the approval with a reason required on rejection."""

from __future__ import annotations

import re
from decimal import Decimal
from typing import Any

import pytest
from flask import current_app

from engine.business.common import Product
from engine.db import db
from engine.users import actor_for, add_user
from tests.webapp.conftest import PASSWORD_HASH, PEOPLE, Browser


@pytest.fixture
def web(office: Any) -> Any:
    """The app of the `office` fixture, its people and a small catalogue."""
    for username, roles, name in PEOPLE:
        user = add_user(username, roles, display_name=name, email=f"{username}@example.com")
        user.password_hash = PASSWORD_HASH
    db.session.add(
        Product(code="LAP-14", name='Laptop 14"', unit_price=Decimal("1150"), purchase_price=Decimal("820"))
    )
    db.session.commit()
    return current_app._get_current_object()  # type: ignore[attr-defined]


def signed_in(app: Any, username: str) -> Browser:
    browser = Browser(app)
    assert browser.login(username).status_code == 302
    return browser


def test_purchase_request_from_the_web_to_its_approval(web, office):
    sam = signed_in(web, "sam")  # sales and manager: he requests, so he may not approve
    form = sam.page("/start/purchase_approval")
    assert 'name="lines[0][product]"' in form and 'type="date"' in form

    response = sam.post(
        "/start/purchase_approval",
        {
            "lines[0][product]": "LAP-14",
            "lines[0][qty]": "1",
            "lines[0][unit_price]": "1 150,00",
            "lines[1][product]": "",
            "suggested_vendor": "",
            "purchase_reason": "A laptop for the new colleague",
            "needed_by": "2026-11-20",
        },
    )
    assert response.status_code == 302, response.get_data(as_text=True)
    flashed = re.search(r'class="flash flash-success">([^<]+)<', sam.page("/inbox"))
    assert flashed and flashed.group(1).endswith("no. 1 started (PR-2026-0001).")

    mona = signed_in(web, "mona")
    approvals = [t for t in office.tasks_for(actor_for("mona")).tasks if t.instance_id == 1]
    assert len(approvals) == 1
    task = approvals[0]
    assert f'href="/tasks/{task.id}"' not in sam.page("/inbox")
    assert sam.get(f"/tasks/{task.id}").status_code == 403
    assert sam.post(f"/tasks/{task.id}", {"decision": "approve"}, form_url="/inbox").status_code == 403

    page = mona.page(f"/tasks/{task.id}")
    assert "A laptop for the new colleague" in page and "LAP-14" in page

    refused = mona.post(f"/tasks/{task.id}", {"decision": "reject", "reason": ""})
    assert refused.status_code == 422
    assert "This field is required." in refused.get_data(as_text=True)

    done = mona.post(f"/tasks/{task.id}", {"decision": "approve", "reason": "ok"})
    assert done.status_code == 302
    assert office.task(task.id).status == "completed"
