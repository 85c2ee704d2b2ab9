"""Error pages, the profile, the admin pages, languages."""

from __future__ import annotations

from sqlalchemy import select

from engine.db import db
from engine.models import AuditEvent, User
from tests.conftest import Clock, make_app
from tests.webapp.conftest import PASSWORD, Browser, request_for_approval


def _user(username: str) -> User:
    db.session.commit()
    user = db.session.scalar(select(User).where(User.username == username))
    assert user is not None
    return user


def test_not_found_page_in_the_products_style(app, people, login_as):
    response = login_as("mona").get("/no/such/page")
    assert response.status_code == 404
    html = response.get_data(as_text=True)
    assert "Not found" in html and "/static/app.css" in html


def test_too_large_request_answers_413(app, people, login_as):
    mona = login_as("mona")
    app.config["MAX_CONTENT_LENGTH"] = 1000
    response = mona.post("/profile", {"display_name": "x" * 5000}, form_url="/profile")
    assert response.status_code == 413
    assert "Too large" in response.get_data(as_text=True)


def test_unexpected_error_shows_a_calm_500_page(tmp_path):
    app = make_app(f"sqlite:///{tmp_path / 'e.db'}", Clock(), PROPAGATE_EXCEPTIONS=False)

    @app.get("/boom")
    def boom():
        raise RuntimeError("secret internals")

    response = app.test_client().get("/boom")
    assert response.status_code == 500
    html = response.get_data(as_text=True)
    assert "Something went wrong" in html
    assert "secret internals" not in html and "Traceback" not in html


def test_profile_changes_name_language_and_password(app, people, login_as):
    mona = login_as("mona")
    response = mona.post(
        "/profile", {"display_name": "Mona M.", "email": "mona@example.org", "language": "pl"}
    )
    assert response.status_code == 302
    user = _user("mona")
    assert (user.display_name, user.email, user.language) == ("Mona M.", "mona@example.org", "pl")
    assert '<html lang="pl">' in mona.page("/inbox")

    wrong = mona.post(
        "/profile",
        {
            "display_name": "Mona M.",
            "language": "en",
            "current_password": "nope",
            "new_password": "a new secret",
            "confirm_password": "a new secret",
        },
    )
    assert wrong.status_code == 422
    other = login_as("mona")
    ok = mona.post(
        "/profile",
        {
            "display_name": "Mona M.",
            "language": "en",
            "current_password": PASSWORD,
            "new_password": "a new secret",
            "confirm_password": "a new secret",
        },
    )
    assert ok.status_code == 302
    assert other.get("/inbox").status_code == 302  # signed out on the other device
    assert mona.get("/inbox").status_code == 200
    assert Browser(app).login("mona", "a new secret").status_code == 302


def test_admin_creates_a_user_who_can_sign_in(app, people, login_as):
    ada = login_as("ada")
    response = ada.post(
        "/admin/users/new",
        {
            "username": "nina",
            "display_name": "Nina New",
            "email": "",
            "language": "lt",
            "roles": ["sales", "accounting"],
            "password": "long enough",
        },
    )
    assert response.status_code == 302
    nina = _user("nina")
    assert nina.roles == {"sales", "accounting"} and nina.language == "lt"
    assert Browser(app).login("nina", "long enough").status_code == 302
    assert "Nina New" in ada.page("/admin/users")

    taken = ada.post(
        "/admin/users/new",
        {"username": "nina", "display_name": "N", "password": "long enough", "language": "en"},
        form_url="/admin/users/new",
    )
    assert taken.status_code == 422 and "This username is taken." in taken.get_data(as_text=True)


def test_admin_changes_roles_and_resets_password(app, three_steps, people, login_as):
    approval = request_for_approval(three_steps, people["sally"])
    three_steps.claim_task(approval, people["dora"])
    ada = login_as("ada")
    dora = _user("dora")

    response = ada.post(
        f"/admin/users/{dora.id}", {"display_name": "Dora D.", "language": "en", "roles": ["director"]}
    )
    assert response.status_code == 302
    assert _user("dora").roles == {"director"}
    assert three_steps.task(approval).assignee is None  # her manager task went back to the queue

    response = ada.post(
        f"/admin/users/{dora.id}/password",
        {"new_password": "brand new pw", "confirm_password": "brand new pw"},
        form_url=f"/admin/users/{dora.id}",
    )
    assert response.status_code == 302
    assert Browser(app).login("dora", "brand new pw").status_code == 302

    me = _user("ada")
    refused = ada.post(f"/admin/users/{me.id}", {"display_name": "Ada", "language": "en", "roles": ["sales"]})
    assert refused.status_code == 422 and _user("ada").roles == {"admin"}


def test_deactivating_gives_claimed_tasks_back_with_an_audit_event(app, three_steps, people, login_as):
    approval = request_for_approval(three_steps, people["sally"])
    three_steps.claim_task(approval, people["mona"])
    mona_id = _user("mona").id
    ada = login_as("ada")

    response = ada.post(f"/admin/users/{mona_id}/deactivate", form_url=f"/admin/users/{mona_id}")

    assert response.status_code == 302
    assert _user("mona").active is False
    task = three_steps.task(approval)
    assert task.assignee is None and task.status == "open"
    events = db.session.scalars(select(AuditEvent).where(AuditEvent.event == "task_unclaimed")).all()
    assert [(e.actor, e.detail["previous_assignee"]) for e in events] == [("ada", "mona")]
    assert db.session.scalar(select(AuditEvent).where(AuditEvent.event == "user_deactivated")) is not None

    me = _user("ada").id
    ada.post(f"/admin/users/{me}/deactivate", form_url=f"/admin/users/{me}")
    assert _user("ada").active is True


def test_login_page_shows_the_demo_password_only_in_demo_mode(app, people):
    assert "Demo mode" not in Browser(app).page("/login")
    app.config["DEMO_MODE"] = True
    assert "Demo mode" in Browser(app).page("/login")


def test_language_follows_the_browser_before_sign_in(app, people):
    html = Browser(app).get("/login", headers={"Accept-Language": "ru,en;q=0.5"}).get_data(as_text=True)
    assert '<html lang="ru">' in html
