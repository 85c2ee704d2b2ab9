"""The JSON API end to end through the Flask test client, on SQLite and PostgreSQL, with the real
processes and forms: a lead from a web form worked to an invoice with tokens of the people who
do each step, a payment posted as a message, and every refusal (401, 403, 404, 409, 422) as
problem details. Every call is checked against the OpenAPI description (`conforms`)."""

from __future__ import annotations

import hashlib
import re
from decimal import Decimal
from typing import Any

import pytest
from flask import current_app
from sqlalchemy import select

from engine import Actor, Engine
from engine.business.sales import Invoice
from engine.business.seed import seed_master_data
from engine.db import db
from engine.models import ProcessInstance, User
from engine.users import add_user
from tests.business.test_lead_to_invoice import LEAD_FORM, ORDER_FORM
from tests.webapp.conftest import PASSWORD_HASH, Browser
from tests.webapp.test_openapi import conforms
from webapp import tokens

STAFF = {
    "sally": ["sales"],
    "max": ["sales", "manager"],  # sells and approves: never his own quotes (four-eyes)
    "mona": ["manager"],
    "olga": ["order_entry"],
    "ivan": ["inventory"],
    "alex": ["accounting"],
    "ada": ["admin"],
}
QUOTE_LINES = [
    {"product": "LAP-14", "qty": 10, "unit_price": "1150.00", "discount_percent": "0", "tax_rate": "20"},
    {"product": "DOCK-1", "qty": 10, "unit_price": "140.00", "discount_percent": "0", "tax_rate": "20"},
]
QUOTE_FORM = {
    "lines": QUOTE_LINES,
    "validity_days": 30,
    "payment_terms_days": 14,
    "currency": "EUR",
    "quote_notes": "Delivery within two weeks.",
}
SHIP_FORM = {
    "shipped_lines": [{"product": "LAP-14", "qty": 10}, {"product": "DOCK-1", "qty": 10}],
    "carrier": "DHL",
    "tracking_number": "JD0001",
    "shipped_on": "2026-11-02",
}
TOKEN_ON_PAGE = re.compile(r"data-token>(bo_[A-Za-z0-9_-]+)<")


class Api:
    """An integration calling the API with one token. Every call is checked against the OpenAPI
    description. Each request runs in an app context of its own, as on a server (see Browser)."""

    def __init__(self, app: Any, token: str | None) -> None:
        self.app = app
        self.client = app.test_client()
        self.headers = {"Authorization": f"Bearer {token}"} if token else {}

    def call(
        self, method: str, template: str, body: Any = None, query: dict[str, Any] | None = None, **path: Any
    ) -> tuple[int, Any]:
        db.session.commit()
        with self.app.app_context():
            response = self.client.open(
                "/api/v1" + template.format(**path),
                method=method,
                json=body,
                query_string=query,
                headers=self.headers,
            )
        return response.status_code, conforms(response, method, template)

    def get(self, template: str, query: dict[str, Any] | None = None, **path: Any) -> tuple[int, Any]:
        return self.call("GET", template, query=query, **path)

    def post(self, template: str, body: Any = None, **path: Any) -> tuple[int, Any]:
        return self.call("POST", template, body, **path)

    def raw(self, method: str, url: str, **kwargs: Any) -> Any:
        db.session.commit()
        with self.app.app_context():
            return self.client.open(url, method=method, headers=self.headers, **kwargs)


@pytest.fixture
def web(office: Engine) -> Any:
    """The app of the `office` fixture (processes/ and forms/ deployed), the master data and the
    staff (who may also sign in to the web app)."""
    seed_master_data()
    for username, roles in STAFF.items():
        user = add_user(username, roles, display_name=username.title(), email=f"{username}@example.com")
        user.password_hash = PASSWORD_HASH
    db.session.commit()
    return current_app._get_current_object()  # type: ignore[attr-defined]


def user(username: str) -> User:
    found = db.session.scalar(select(User).where(User.username == username))
    assert found is not None
    return found


def token_of(username: str) -> str:
    return tokens.create_token(user(username), "integration test")[1]


def api_of(app: Any, username: str) -> Api:
    return Api(app, token_of(username))


def actor(username: str) -> Actor:
    return Actor.of(username, *STAFF[username])


def task_named(api: Api, element_id: str, **query: Any) -> dict[str, Any]:
    status, page = api.get("/tasks", {"limit": 100, **query})
    assert status == 200
    found = [t for t in page["tasks"] if t["element_id"] == element_id]
    assert found, f"no {element_id} task; tasks: {[t['element_id'] for t in page['tasks']]}"
    return found[0]


def complete(api: Api, element_id: str, data: dict[str, Any]) -> dict[str, Any]:
    task = task_named(api, element_id)
    status, body = api.post("/tasks/{task_id}/complete", data, task_id=task["id"])
    assert status == 200, body
    return body


# -- engine shortcuts to reach a stage quickly (the flow itself is driven through the API below) --
def engine_task(office: Engine, username: str, element_id: str) -> int:
    return next(t.id for t in office.tasks_for(actor(username), limit=200).tasks if t.spec_id == element_id)


def engine_complete(office: Engine, username: str, element_id: str, data: dict[str, Any]) -> None:
    office.complete_task(engine_task(office, username, element_id), actor(username), data)


def quote_waiting_for_approval(office: Engine, seller: str, discount: str) -> int:
    instance_id = office.start_process("lead_to_invoice", LEAD_FORM, actor(seller))
    engine_complete(
        office, seller, "qualify_lead", {"qualification": "qualified", "contact_note": "Wants it"}
    )
    lines = [{**QUOTE_LINES[0], "discount_percent": discount}, QUOTE_LINES[1]]
    engine_complete(office, seller, "prepare_quote", {**QUOTE_FORM, "lines": lines})
    return instance_id


def invoice_waiting_for_payment(office: Engine) -> tuple[int, str]:
    instance_id = quote_waiting_for_approval(office, "sally", "0")
    engine_complete(office, "sally", "record_customer_decision", {"customer_decision": "accepted"})
    engine_complete(office, "olga", "create_sales_order", ORDER_FORM)
    engine_complete(office, "ivan", "ship_order", SHIP_FORM)
    return instance_id, str(office.instance_data(instance_id)["invoice_number"])


def fields_of(problem: dict[str, Any]) -> dict[str, str]:
    return {e["field"]: e["reason"] for e in problem["errors"]}


# -- the journeys ---------------------------------------------------------------------------------
def test_a_web_form_lead_worked_to_a_paid_invoice_through_the_api(web, office):
    # sally makes her token on her profile page: shown once, then only its prefix
    browser = Browser(web)
    assert browser.login("sally").status_code == 302
    assert "You have no API tokens." in browser.page("/profile")
    created = browser.post("/profile/tokens", {"token-name": "Website lead form"}, form_url="/profile")
    assert created.status_code == 200
    match = TOKEN_ON_PAGE.search(created.get_data(as_text=True))
    assert match, "the new token is not on the page"
    token = match.group(1)
    again = browser.page("/profile")
    assert token not in again and "Website lead form" in again and token[:10] + "…" in again
    sally = Api(web, token)

    # the web form starts the process
    status, started = sally.post(
        "/processes/{process_id}/instances", process_id="lead_to_invoice", body=LEAD_FORM
    )
    assert status == 201
    instance_id = started["id"]
    assert (started["process_id"], started["version"], started["status"]) == ("lead_to_invoice", 1, "running")
    [qualify] = started["tasks"]
    assert (qualify["element_id"], qualify["assignee"], qualify["may_act"]) == ("qualify_lead", "sally", True)
    lead_number = qualify["document"]["number"]
    assert qualify["document"]["url"] == f"/api/v1/documents/leads/{lead_number}"

    status, task = sally.get("/tasks/{task_id}", task_id=qualify["id"])
    assert status == 200 and "qualification" in task["form"]["properties"]
    status, claimed = sally.post("/tasks/{task_id}/claim", task_id=qualify["id"])  # hers already
    assert (status, claimed["assignee"]) == (200, "sally")
    done = complete(sally, "qualify_lead", {"qualification": "qualified", "contact_note": "Wants 10 laptops"})
    assert done["task"]["status"] == "completed" and done["task"]["completed_by"] == "sally"
    assert [t["element_id"] for t in done["instance"]["tasks"]] == ["prepare_quote"]

    complete(sally, "prepare_quote", QUOTE_FORM)
    complete(
        sally, "record_customer_decision", {"customer_decision": "accepted", "customer_reference": "PO-77"}
    )

    # order entry: a task of the role, claimed, given back, claimed again and completed
    olga = api_of(web, "olga")
    order = task_named(olga, "create_sales_order")
    assert (order["assignee"], order["status"], order["may_act"]) == (None, "open", True)
    status, claimed = olga.post("/tasks/{task_id}/claim", task_id=order["id"])
    assert (status, claimed["assignee"], claimed["status"]) == (200, "olga", "claimed")
    status, released = olga.post("/tasks/{task_id}/unclaim", task_id=order["id"])
    assert (status, released["assignee"], released["status"]) == (200, None, "open")
    assert olga.post("/tasks/{task_id}/claim", task_id=order["id"])[0] == 200
    complete(olga, "create_sales_order", ORDER_FORM)
    ivan = api_of(web, "ivan")
    shipped = complete(ivan, "ship_order", SHIP_FORM)
    assert shipped["instance"]["data"]["invoice_number"]  # ivan shipped it: he sees its data

    status, instance = sally.get("/instances/{instance_id}", instance_id=instance_id)
    assert status == 200 and instance["incidents"] == []
    invoice_number = instance["data"]["invoice_number"]
    status, invoice = sally.get("/documents/{kind}/{number}", kind="invoices", number=invoice_number)
    assert status == 200
    assert (invoice["status"], invoice["fields"]["total"], invoice["fields"]["balance"]) == (
        "open",
        "15480.00",
        "15480.00",
    )
    assert invoice["customer"]["name"] == "Northwind Traders"
    assert [line["product"] for line in invoice["parts"]["lines"]] == ["LAP-14", "DOCK-1"]
    assert invoice["instance"] == {"id": instance_id, "url": f"/api/v1/instances/{instance_id}"}
    assert [r["kind"] for r in invoice["related"]] == ["customers", "orders"]

    # the bank's payment arrives as a message; accounting posts it
    alex = api_of(web, "alex")
    payment = {"amount": "15480.00", "paid_on": "2026-11-20", "reference": "BANK-1"}
    body = {"correlation": {"invoice_number": invoice_number}, "payload": payment}
    status, delivered = alex.post("/messages/{message_name}", body, message_name="payment_received")
    assert status == 200 and [i["id"] for i in delivered["instances"]] == [instance_id]

    status, paid = alex.get("/documents/{kind}/{number}", kind="invoices", number=invoice_number)
    assert (paid["status"], paid["fields"]["balance"], paid["fields"]["paid_on"]) == (
        "paid",
        "0.00",
        "2026-11-20",
    )
    [booked] = paid["parts"]["payments"]
    assert (booked["amount"], booked["reference"], booked["booked_by"]) == ("15480.00", "BANK-1", "alex")
    assert [e["action"] for e in paid["history"]] == ["issued", "paid"]

    # nobody waits for a second payment of a paid invoice
    status, problem = alex.post("/messages/{message_name}", body, message_name="payment_received")
    assert status == 409 and "no instance is waiting" in problem["detail"]

    status, lead = sally.get("/documents/{kind}/{number}", kind="leads", number=lead_number)
    assert (status, lead["status"], lead["fields"]["owner"]) == (200, "converted", "sally")


def test_a_payment_message_in_parts_and_its_refusals(web, office):
    instance_id, number = invoice_waiting_for_payment(office)
    alex, sally = api_of(web, "alex"), api_of(web, "sally")

    def pay(api: Api, correlation: Any, payload: Any, message: str = "payment_received") -> tuple[int, Any]:
        body = {"correlation": correlation, "payload": payload}
        return api.post("/messages/{message_name}", body, message_name=message)

    part = {"amount": "5000.00", "reference": "BANK-7"}
    status, problem = pay(sally, {"invoice_number": number}, part)  # sales may not book payments
    assert status == 403 and "accounting" in problem["detail"]
    status, problem = pay(alex, {"invoice_number": number}, part, message="nothing_like_it")
    assert status == 404 and "payment_received" in problem["detail"]

    # refused before it reaches the process: the instance keeps waiting, no incident
    status, problem = pay(alex, {"invoice_number": number, "x": 1}, {"amount": "12,5", "extra": True})
    assert status == 422
    assert fields_of(problem) == {
        "correlation/x": "this field is not accepted",
        "payload/amount": fields_of(problem)["payload/amount"],
        "payload/extra": "this field is not accepted",
        "payload/reference": "this field is required",
    }
    status, problem = pay(alex, {"invoice_number": number}, {**part, "invoice_number": "INV-1999-0001"})
    assert status == 422 and list(fields_of(problem)) == ["payload/invoice_number"]
    # the process refuses more than the balance: 422 naming the field, nothing booked
    status, problem = pay(alex, {"invoice_number": number}, {"amount": "99999.00", "reference": "BANK-8"})
    assert status == 422 and "open balance" in fields_of(problem)["payload/amount"]
    status, problem = pay(alex, {"invoice_number": "INV-1999-0001"}, part)
    assert status == 409 and "INV-1999-0001" in problem["detail"]
    # (accounting has had no task of this instance: it is not theirs to see)
    assert alex.get("/instances/{instance_id}", instance_id=instance_id)[0] == 404
    status, instance = sally.get("/instances/{instance_id}", instance_id=instance_id)
    assert instance["status"] == "waiting" and instance["incidents"] == []

    status, delivered = pay(alex, {"invoice_number": number}, part)  # paid_on: today
    assert status == 200 and delivered["instances"] == [{"id": instance_id, "status": "waiting"}]
    invoice = db.session.scalar(select(Invoice).where(Invoice.number == number))
    assert invoice is not None and (invoice.status, invoice.balance) == ("open", Decimal("10480.00"))
    assert invoice.payments[0].paid_on.isoformat() == "2026-11-02"


def test_four_eyes_completing_twice_and_field_errors(web, office):
    quote_waiting_for_approval(office, "max", "15")  # max wrote the quote: he may not approve it
    approval = engine_task(office, "mona", "approve_discount")
    max_api, mona = api_of(web, "max"), api_of(web, "mona")

    status, problem = max_api.get("/tasks/{task_id}", task_id=approval)
    assert status == 403 and "four-eyes" in problem["detail"]
    status, problem = max_api.post("/tasks/{task_id}/claim", task_id=approval)
    assert status == 403 and "four-eyes" in problem["detail"]
    status, problem = max_api.post("/tasks/{task_id}/complete", {"decision": "approve"}, task_id=approval)
    assert status == 403 and "four-eyes" in problem["detail"]
    assert office.task(approval).status == "open"

    status, problem = mona.post("/tasks/{task_id}/complete", {"decision": "reject"}, task_id=approval)
    assert status == 422 and list(fields_of(problem)) == ["reason"]
    status, problem = mona.post(
        "/tasks/{task_id}/complete", {"decision": "maybe", "comment": "x"}, task_id=approval
    )
    assert status == 422 and set(fields_of(problem)) == {"decision", "comment"}
    assert fields_of(problem)["comment"] == "this field is not part of the form"
    status, problem = mona.post("/tasks/{task_id}/complete", [1, 2], task_id=approval)
    assert status == 422 and fields_of(problem) == {"": "must be a JSON object"}
    response = mona.raw(
        "POST", f"/api/v1/tasks/{approval}/complete", data="{not json", content_type="application/json"
    )
    assert response.status_code == 400 and response.mimetype == "application/problem+json"
    conforms(response, "POST", "/tasks/{task_id}/complete")
    huge = '{"reason": "' + "x" * (3 * 1024 * 1024) + '"}'
    response = mona.raw(
        "POST", f"/api/v1/tasks/{approval}/complete", data=huge, content_type="application/json"
    )
    assert response.status_code == 413
    conforms(response, "POST", "/tasks/{task_id}/complete")

    status, done = mona.post(
        "/tasks/{task_id}/complete", {"decision": "approve", "reason": "Key account"}, task_id=approval
    )
    assert status == 200 and done["task"]["completed_by"] == "mona"
    status, problem = mona.post("/tasks/{task_id}/complete", {"decision": "approve"}, task_id=approval)
    assert status == 409 and "already completed by mona" in problem["detail"]

    status, problem = mona.get("/tasks/{task_id}", task_id=999999)
    assert status == 404 and problem["detail"] == "task 999999 does not exist"
    status, problem = mona.post("/tasks/{task_id}/claim", task_id=999999)
    assert status == 404

    status, problem = max_api.post(
        "/processes/{process_id}/instances",
        process_id="lead_to_invoice",
        body={**LEAD_FORM, "company": "", "source": "fax", "fax": "1"},
    )
    assert status == 422
    assert set(fields_of(problem)) == {"company", "source", "fax"}
    status, problem = max_api.post(
        "/processes/{process_id}/instances", process_id="lead_to_invoice", body={"company": "Solo"}
    )
    assert status == 422 and {"contact_name", "email", "interest"} <= set(fields_of(problem))
    assert fields_of(problem)["contact_name"] == "this field is required"


def test_who_sees_and_does_what(web, office):
    instance_id = quote_waiting_for_approval(office, "sally", "0")
    decision = engine_task(office, "sally", "record_customer_decision")
    ivan, olga, ada, mona = (api_of(web, name) for name in ("ivan", "olga", "ada", "mona"))

    # a task of another role does not exist for you to look at, and you may not act on it
    assert ivan.get("/tasks/{task_id}", task_id=decision)[0] == 404
    status, problem = ivan.post(
        "/tasks/{task_id}/complete", {"customer_decision": "accepted"}, task_id=decision
    )
    assert status == 403
    assert olga.post("/tasks/{task_id}/claim", task_id=decision)[0] == 403
    # nor does the instance (olga has had no task of it yet); the administrator sees everything
    assert olga.get("/instances/{instance_id}", instance_id=instance_id)[0] == 404
    assert olga.get("/instances")[1]["instances"] == []
    status, seen = ada.get("/instances/{instance_id}", instance_id=instance_id)
    assert status == 200 and seen["data"]["quote_number"]
    # starting: lead_to_invoice is for sales, marketing and reception; unknown processes are 404
    status, problem = ivan.post(
        "/processes/{process_id}/instances", process_id="lead_to_invoice", body=LEAD_FORM
    )
    assert status == 403 and "sales" in problem["detail"]
    assert ivan.post("/processes/{process_id}/instances", process_id="no_such_process", body={})[0] == 404
    # documents under the pages' rules
    status, problem = ivan.get("/documents/{kind}/{number}", kind="leads", number="L-2026-0001")
    assert status == 403
    assert mona.get("/documents/{kind}/{number}", kind="leads", number="L-2026-0001")[0] == 200
    assert mona.get("/documents/{kind}/{number}", kind="leads", number="L-1999-0009")[0] == 404
    assert mona.get("/documents/{kind}/{number}", kind="spaceships", number="1")[0] == 404
    # the administrator may release anyone's claim
    sally = api_of(web, "sally")
    assert sally.post("/tasks/{task_id}/claim", task_id=decision)[1]["assignee"] == "sally"
    status, problem = olga.post("/tasks/{task_id}/unclaim", task_id=decision)
    assert status == 403
    assert ada.post("/tasks/{task_id}/unclaim", task_id=decision)[1]["assignee"] is None

    # the customer accepts the quote in a portal: sales posts it, order entry takes over
    body = {"correlation": {"quote_number": "Q-2026-0001"}, "payload": {"accepted_by": "Nora North"}}
    status, problem = olga.post("/messages/{message_name}", body, message_name="quote_accepted")
    assert status == 403
    status, delivered = sally.post("/messages/{message_name}", body, message_name="quote_accepted")
    assert status == 200 and [i["id"] for i in delivered["instances"]] == [instance_id]
    assert task_named(olga, "create_sales_order")["instance_id"] == instance_id
    assert sally.get("/tasks")[1]["tasks"] == []

    status, me = sally.get("/me")
    assert me == {"username": "sally", "display_name": "Sally", "roles": ["sales"]}


def test_lists_filter_and_come_in_pages(web, office):
    first = office.start_process("lead_to_invoice", LEAD_FORM, actor("sally"))
    second = office.start_process("lead_to_invoice", {**LEAD_FORM, "company": "Baltic Amber"}, actor("sally"))
    sally = api_of(web, "sally")

    status, page = sally.get("/tasks", {"limit": 1, "sort": "age"})
    assert status == 200 and [t["instance_id"] for t in page["tasks"]] == [first]
    status, page = sally.get("/tasks", {"limit": 1, "sort": "age", "cursor": page["next_cursor"]})
    assert [t["instance_id"] for t in page["tasks"]] == [second] and page["next_cursor"] is None
    status, page = sally.get("/tasks", {"q": "Baltic"})
    assert [t["instance_id"] for t in page["tasks"]] == [second]
    status, problem = sally.get("/tasks", {"role": "manager", "sort": "alphabet", "overdue": "maybe"})
    assert status == 422 and set(fields_of(problem)) == {"role", "sort", "overdue"}
    status, problem = sally.get("/tasks", {"cursor": "rubbish", "limit": 0})
    assert status == 422 and list(fields_of(problem)) == ["limit"]
    status, problem = sally.get("/tasks", {"cursor": "rubbish"})
    assert status == 422 and list(fields_of(problem)) == ["cursor"]

    status, page = sally.get("/instances", {"limit": 1})
    assert [i["id"] for i in page["instances"]] == [second]
    status, page = sally.get("/instances", {"limit": 1, "cursor": page["next_cursor"]})
    assert [i["id"] for i in page["instances"]] == [first] and page["next_cursor"] is None
    status, page = sally.get("/instances", {"process_id": "lead_to_invoice", "status": "running"})
    assert [i["id"] for i in page["instances"]] == [second, first]
    status, page = sally.get("/instances", {"status": "completed"})
    assert page["instances"] == []
    status, problem = sally.get("/instances", {"status": "asleep"})
    assert status == 422 and list(fields_of(problem)) == ["status"]

    # a business key of your own, to find the instance again
    status, started = sally.post(
        "/processes/{process_id}/instances", process_id="lead_to_invoice", body=LEAD_FORM
    )
    assert started["business_key"] is None
    response = sally.raw(
        "POST", "/api/v1/processes/lead_to_invoice/instances?business_key=web-4711", json=LEAD_FORM
    )
    keyed = conforms(response, "POST", "/processes/{process_id}/instances")
    assert response.headers["Location"] == f"/api/v1/instances/{keyed['id']}"
    status, page = sally.get("/instances", {"business_key": "web-4711"})
    assert [(i["id"], i["business_key"]) for i in page["instances"]] == [(keyed["id"], "web-4711")]
    assert db.session.get(ProcessInstance, keyed["id"]).business_key == "web-4711"


# -- authentication -------------------------------------------------------------------------------
def test_only_a_live_token_of_an_active_user_authenticates(app, people, clock):
    sally = db.session.scalar(select(User).where(User.username == "sally"))
    row, token = tokens.create_token(sally, "CRM")
    # hashed at rest: the table has the SHA-256 and the prefix, never the token
    assert row.token_hash == hashlib.sha256(token.encode()).hexdigest()
    assert row.prefix == token[:10] and token.startswith("bo_") and len(token) > 40

    def challenge(headers: dict[str, str]) -> Any:
        db.session.commit()
        with app.app_context():
            response = app.test_client().get("/api/v1/me", headers=headers)
        body = conforms(response, "GET", "/me")
        return response.status_code, response.headers.get("WWW-Authenticate"), body

    assert challenge({"Authorization": f"Bearer {token}"})[0] == 200
    for headers in ({}, {"Authorization": f"Basic {token}"}, {"Authorization": "Bearer"}):
        assert challenge(headers)[:2] == (401, 'Bearer realm="backoffice"'), headers
    refused = (401, 'Bearer realm="backoffice", error="invalid_token"')
    assert challenge({"Authorization": "Bearer bo_guessed"})[:2] == refused
    assert challenge({"Authorization": f"Bearer {token}x"})[:2] == refused

    # last used: noted, at most once a minute
    first_use = clock.current
    db.session.refresh(row)
    assert row.last_used_at is not None and tokens._aware(row.last_used_at) == first_use
    clock.advance(seconds=50)
    challenge({"Authorization": f"Bearer {token}"})
    db.session.refresh(row)
    assert tokens._aware(row.last_used_at) == first_use
    clock.advance(seconds=20)
    challenge({"Authorization": f"Bearer {token}"})
    db.session.refresh(row)
    assert tokens._aware(row.last_used_at) == clock.current

    # a deactivated user's tokens stop working, and work again when the user is back
    sally.active = False
    assert challenge({"Authorization": f"Bearer {token}"})[:2] == refused
    sally.active = True
    assert challenge({"Authorization": f"Bearer {token}"})[0] == 200
    tokens.revoke_token(sally.id, row.id)
    status, _, problem = challenge({"Authorization": f"Bearer {token}"})
    assert status == 401 and "revoked" in problem["detail"]


def test_a_session_cookie_alone_is_not_enough(app, login_as):
    browser = login_as("sally")
    assert browser.get("/inbox").status_code == 200  # signed in
    response = browser.get("/api/v1/tasks")
    assert response.status_code == 401 and response.mimetype == "application/problem+json"
    # a POST with the cookie and no token: 401, not a CSRF refusal and not a start
    response = browser.post_without_token("/api/v1/processes/purchase_approval/instances", {})
    assert response.status_code == 401
    conforms(response, "POST", "/processes/{process_id}/instances")
    assert db.session.scalar(select(ProcessInstance.id)) is None


def test_unknown_routes_and_methods_answer_problem_details(app):
    client = app.test_client()
    response = client.get("/api/v1/nothing/here")
    assert response.status_code == 404 and response.mimetype == "application/problem+json"
    assert response.get_json()["status"] == 404
    response = client.delete("/api/v1/tasks")
    assert response.status_code == 405 and response.mimetype == "application/problem+json"
    assert "GET" in response.headers["Allow"]
    assert client.get("/no/such/page").mimetype == "text/html"  # the pages keep their HTML


def test_tokens_on_the_profile_page(app, login_as):
    sally = login_as("sally")
    refused = sally.post("/profile/tokens", {"token-name": "   "}, form_url="/profile")
    assert refused.status_code == 422 and "This field is required." in refused.get_data(as_text=True)
    page = sally.post("/profile/tokens", {"token-name": "Shop <script>"}, form_url="/profile")
    text = page.get_data(as_text=True)
    token = TOKEN_ON_PAGE.search(text)
    assert token and "Shop &lt;script&gt;" in text and "<script>" not in text
    row = db.session.scalar(select(tokens.ApiToken).where(tokens.ApiToken.name == "Shop <script>"))
    assert row is not None and row.token_hash == tokens.hash_token(token.group(1))

    # someone else cannot revoke it; sally can, and then it is gone from her page
    alex = login_as("alex")
    assert alex.post(f"/profile/tokens/{row.id}/revoke", form_url="/profile").status_code == 404
    assert sally.post_without_token(f"/profile/tokens/{row.id}/revoke", {}).status_code == 400  # CSRF
    revoked = sally.post(f"/profile/tokens/{row.id}/revoke", form_url="/profile")
    assert revoked.status_code == 302
    page_after = sally.page("/profile")
    assert "is revoked" in page_after and "Shop &lt;script&gt;" in page_after
    assert row.prefix not in page_after
    db.session.refresh(row)
    assert row.revoked_at is not None
