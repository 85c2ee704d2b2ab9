"""The defences of the web app, each test written to fail without its defence."""

from __future__ import annotations

import re

from tests.conftest import Clock, make_app
from tests.webapp.conftest import Browser, entry_task, request_for_approval
from webapp.security import CONTENT_SECURITY_POLICY

# -- authorization ---------------------------------------------------------------------------------


def test_another_roles_task_completed_by_id_is_forbidden(app, three_steps, people, login_as):
    approval = request_for_approval(three_steps, people["sally"])
    sally = login_as("sally")  # sales, not manager

    response = sally.post(f"/tasks/{approval}", {"decision": "approve"}, form_url="/inbox")

    assert response.status_code == 403
    assert three_steps.task(approval).status == "open"
    assert sally.get(f"/tasks/{approval}").status_code == 404  # she cannot even see it


def test_requester_cannot_approve_own_request(app, three_steps, people, login_as):
    approval = request_for_approval(three_steps, people["sam"])  # sam is sales and manager
    sam = login_as("sam")

    page = sam.get(f"/tasks/{approval}")
    assert page.status_code == 403
    assert 'name="decision"' not in page.get_data(as_text=True)  # no form to fill in
    response = sam.post(f"/tasks/{approval}", {"decision": "approve"}, form_url="/inbox")
    assert response.status_code == 403
    assert three_steps.task(approval).status == "open"
    assert approval not in [t.id for t in three_steps.tasks_for(people["sam"]).tasks]


def test_another_roles_instance_data_is_not_found(app, three_steps, people, login_as):
    approval = request_for_approval(three_steps, people["sally"], subject="Secret merger")
    instance_id = three_steps.task(approval).instance_id

    alex = login_as("alex")  # accounting: nothing of this instance is theirs yet
    response = alex.get(f"/instances/{instance_id}")
    assert response.status_code == 404
    assert "Secret merger" not in response.get_data(as_text=True)

    assert "Secret merger" in login_as("mona").page(f"/instances/{instance_id}")
    assert "Secret merger" in login_as("sally").page(f"/instances/{instance_id}")


def test_pages_need_a_signed_in_user(app, three_steps, people):
    approval = request_for_approval(three_steps, people["sally"])
    anonymous = Browser(app)
    for url in ("/inbox", f"/tasks/{approval}", "/admin/users", "/profile", "/start/purchase_approval"):
        response = anonymous.get(url)
        assert response.status_code == 302 and "/login" in response.location, url
    assert anonymous.get("/inbox/counts.json").status_code == 401


def test_admin_pages_need_the_admin_role(app, people, login_as):
    mona = login_as("mona")
    assert mona.get("/admin/users").status_code == 403
    response = mona.post(
        "/admin/users/new",
        {"username": "eve", "display_name": "Eve", "password": "x" * 10},
        form_url="/inbox",
    )
    assert response.status_code == 403


# -- CSRF ------------------------------------------------------------------------------------------


def test_post_without_csrf_token_is_refused(app, three_steps, people, login_as):
    approval = request_for_approval(three_steps, people["sally"])
    mona = login_as("mona")

    response = mona.post_without_token(f"/tasks/{approval}", {"decision": "approve"})

    assert response.status_code == 400
    assert "Traceback" not in response.get_data(as_text=True)
    assert three_steps.task(approval).status == "open"
    assert Browser(app).post_without_token("/login", {"username": "mona", "password": "x"}).status_code == 400


def test_post_with_another_sessions_token_is_refused(app, three_steps, people, login_as):
    approval = request_for_approval(three_steps, people["sally"])
    mona, dora = login_as("mona"), login_as("dora")
    foreign = dora.token(f"/tasks/{approval}")

    response = mona.post_without_token(f"/tasks/{approval}", {"decision": "approve", "csrf_token": foreign})

    assert response.status_code == 400
    assert three_steps.task(approval).status == "open"


# -- escaping --------------------------------------------------------------------------------------


def test_script_in_task_data_is_shown_escaped(app, three_steps, people, login_as):
    evil = "<script>alert('x')</script>"
    approval = request_for_approval(three_steps, people["sally"], subject=evil)
    mona = login_as("mona")

    for url in ("/inbox", f"/tasks/{approval}"):
        html = mona.page(url)
        assert evil not in html, url
        assert "&lt;script&gt;alert(" in html, url


def test_no_inline_script_in_pages(app, three_steps, people, login_as):
    approval = request_for_approval(three_steps, people["sally"])
    mona = login_as("mona")
    for url in ("/", "/inbox", f"/tasks/{approval}", "/profile"):
        html = mona.page(url)
        for tag in re.findall(r"<script[^>]*>", html):
            assert "src=" in tag, (url, tag)
        assert " style=" not in html and "<style" not in html, url
        assert re.search(r"\son[a-z]+=", html) is None, url


# -- forms -----------------------------------------------------------------------------------------


def test_undeclared_form_fields_are_refused_by_name(app, three_steps, people, login_as):
    approval = request_for_approval(three_steps, people["sally"])
    mona = login_as("mona")

    response = mona.post(f"/tasks/{approval}", {"decision": "approve", "approved_amount": "1000000"})

    assert response.status_code == 422
    assert "approved_amount" in response.get_data(as_text=True)
    assert three_steps.task(approval).status == "open"


def test_refused_form_comes_back_with_the_input_and_errors_beside_fields(app, three_steps, people, login_as):
    task_id = entry_task(three_steps, people["sally"])
    sally = login_as("sally")

    response = sally.post(
        f"/tasks/{task_id}", {"subject": "Printer paper", "amount": "lots", "email": "x@y.z"}
    )

    assert response.status_code == 422
    html = response.get_data(as_text=True)
    assert 'value="Printer paper"' in html and 'value="lots"' in html and 'value="x@y.z"' in html
    amount_field = html[html.index('id="f-amount"') :][:1500]
    assert "Enter a whole number." in amount_field
    assert three_steps.task(task_id).status == "open"

    response = sally.post(f"/tasks/{task_id}", {"subject": "Printer paper", "amount": "-5"})
    assert response.status_code == 422
    html = response.get_data(as_text=True)
    assert 'value="Printer paper"' in html and 'value="-5"' in html
    assert "-5 is less than the minimum of 0" in html


def test_task_completed_meanwhile_answers_409_naming_who(app, three_steps, people, login_as):
    approval = request_for_approval(three_steps, people["sally"])
    mona, dora = login_as("mona"), login_as("dora")
    mona_token = mona.token(f"/tasks/{approval}")  # both have the page open

    assert dora.post(f"/tasks/{approval}", {"decision": "approve"}).status_code == 302
    response = mona.post_without_token(f"/tasks/{approval}", {"decision": "reject", "csrf_token": mona_token})

    assert response.status_code == 409
    html = response.get_data(as_text=True)
    assert "Dora Director" in html
    assert "2026" in html  # when
    assert three_steps.task(approval).status == "completed"


# -- sign-in ---------------------------------------------------------------------------------------


def test_repeated_failed_logins_are_slowed_down(app, people, clock):
    attacker = Browser(app)
    for _ in range(5):
        response = attacker.login("mona", "guess")
        assert response.status_code == 401
    locked = attacker.login("mona")  # even the right password is refused while locked out
    assert locked.status_code == 429
    assert "Try again in" in locked.get_data(as_text=True)
    assert attacker.get("/inbox").status_code == 302

    # another address is not locked out by this one
    assert Browser(app, REMOTE_ADDR="10.1.2.3").login("mona").status_code == 302

    clock.advance(seconds=31)
    assert attacker.login("mona", "guess again").status_code == 401  # the lock now doubles
    clock.advance(seconds=31)
    assert attacker.login("mona").status_code == 429
    clock.advance(seconds=30)
    assert attacker.login("mona").status_code == 302
    assert attacker.get("/inbox").status_code == 200


def test_a_successful_login_clears_the_failures(app, people, clock):
    browser = Browser(app)
    for _ in range(4):
        browser.login("mona", "guess")
    assert browser.login("mona").status_code == 302
    other = Browser(app)
    for _ in range(4):
        assert other.login("mona", "guess").status_code == 401  # the count started again
    assert other.login("mona").status_code == 302


def test_session_is_new_at_login_and_dead_after_logout(app, people):
    browser = Browser(app)
    browser.get("/login")
    before = browser.cookie()
    assert before is not None  # the anonymous session holding the CSRF token
    serializer = app.session_interface.get_signing_serializer(app)

    assert browser.login("mona").status_code == 302
    signed_in = browser.cookie()
    assert signed_in != before
    session = serializer.loads(signed_in)
    assert session["_user_id"] and session["_user_id"] not in before
    assert "csrf_token" not in session  # nothing from before the sign-in survives

    second = Browser(app)
    second.login("mona")
    assert serializer.loads(second.cookie())["_user_id"] != session["_user_id"]

    assert browser.post("/logout", form_url="/inbox").status_code == 302
    replay = Browser(app)
    replay.client.set_cookie("backoffice_session", signed_in)
    assert replay.get("/inbox").status_code == 302  # the copied cookie is dead
    assert second.get("/inbox").status_code == 200  # the other sign-in lives on


def test_deactivated_user_is_signed_out(app, people, login_as):
    mona = login_as("mona")
    ada = login_as("ada")
    mona_id = _user_id("mona")
    assert (
        ada.post(f"/admin/users/{mona_id}/deactivate", form_url=f"/admin/users/{mona_id}").status_code == 302
    )
    assert mona.get("/inbox").status_code == 302
    assert Browser(app).login("mona").status_code == 401


def test_next_after_login_stays_on_this_site(app, people):
    browser = Browser(app)
    response = browser.post(
        "/login",
        {"username": "mona", "password": "correct horse battery", "next": "//evil.example/steal"},
        form_url="/login?next=//evil.example",
    )
    assert response.status_code == 302
    assert "evil.example" not in response.location


# -- headers ---------------------------------------------------------------------------------------


def test_security_headers_and_cookie_flags(app, people):
    response = Browser(app).get("/login")
    assert response.headers["Content-Security-Policy"] == CONTENT_SECURITY_POLICY
    for directive in (
        "script-src 'self'",
        "object-src 'none'",
        "frame-ancestors 'none'",
        "form-action 'self'",
    ):
        assert directive in CONTENT_SECURITY_POLICY
    assert "unsafe-inline" not in CONTENT_SECURITY_POLICY
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["Referrer-Policy"] == "same-origin"
    cookie = response.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie and "Secure" not in cookie


def test_cookies_are_secure_behind_tls(tmp_path):
    app = make_app(f"sqlite:///{tmp_path / 'tls.db'}", Clock(), PREFERRED_URL_SCHEME="https")
    assert app.config["SESSION_COOKIE_SECURE"] is True


def _user_id(username):
    from sqlalchemy import select

    from engine.db import db
    from engine.models import User

    return db.session.scalar(select(User.id).where(User.username == username))
