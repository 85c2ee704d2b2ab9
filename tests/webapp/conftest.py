"""Personas who sign in through the real login form, and a browser-like client that sends the
CSRF token it finds in the page (CSRF protection stays on in these tests)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from werkzeug.security import generate_password_hash

from engine import Actor, Engine
from engine.db import db
from engine.users import add_user
from tests.conftest import read_files

ROOT = Path(__file__).resolve().parents[2]
THREE_STEPS = ROOT / "tests" / "engine" / "bpmn" / "three_steps.bpmn"
PASSWORD = "correct horse battery"
CSRF = re.compile(r'name="csrf_token"[^>]*value="([^"]+)"')

# username, roles, display name
PEOPLE = [
    ("sally", ["sales"], "Sally Sales"),
    ("sam", ["sales", "manager"], "Sam Both"),  # requests and approves: four-eyes applies to him
    ("mona", ["manager"], "Mona Manager"),
    ("dora", ["director", "manager"], "Dora Director"),
    ("alex", ["accounting"], "Alex Accounting"),
    ("ada", ["admin"], "Ada Admin"),
]


class Browser:
    """A test client used like a browser: it reads the form before it posts it.

    Each request runs in an application context of its own, as on a server: the `app` fixture
    keeps one open for the test, and a request would otherwise share its `g` (the CSRF token,
    the signed-in user) with every other request of the test. The test's own session ends its
    transaction first (on SQLite every transaction holds the write lock)."""

    def __init__(self, app: Any, **environ: Any) -> None:
        self.app = app
        self.client = app.test_client()
        self.environ = environ

    def get(self, url: str, **kwargs: Any) -> Any:
        db.session.commit()
        with self.app.app_context():
            return self.client.get(url, environ_base=self.environ, **kwargs)

    def _post(self, url: str, data: dict[str, Any]) -> Any:
        db.session.commit()
        with self.app.app_context():
            return self.client.post(url, data=data, environ_base=self.environ)

    def page(self, url: str) -> str:
        response = self.get(url)
        assert response.status_code == 200, (url, response.status_code)
        return str(response.get_data(as_text=True))

    def token(self, url: str) -> str:
        match = CSRF.search(self.get(url).get_data(as_text=True))
        assert match, f"no CSRF token on {url}"
        return match.group(1)

    def post(self, url: str, data: dict[str, Any] | None = None, form_url: str | None = None) -> Any:
        """POST as the page at `form_url` (default: `url`) would, with its CSRF token."""
        fields = {"csrf_token": self.token(form_url or url), **(data or {})}
        return self._post(url, fields)

    def post_without_token(self, url: str, data: dict[str, Any]) -> Any:
        return self._post(url, data)

    def login(self, username: str, password: str = PASSWORD) -> Any:
        return self.post("/login", {"username": username, "password": password})

    def cookie(self) -> str | None:
        cookie = self.client.get_cookie("backoffice_session")
        return cookie.value if cookie else None


# scrypt (what add_user uses) costs ~0.1 s a hash; the personas share one cheap hash of PASSWORD
PASSWORD_HASH = generate_password_hash(PASSWORD, method="pbkdf2:sha256:1000")


@pytest.fixture
def people(app: Any) -> dict[str, Actor]:
    actors = {}
    for username, roles, name in PEOPLE:
        user = add_user(username, roles, display_name=name, email=f"{username}@example.com")
        user.password_hash = PASSWORD_HASH
        actors[username] = Actor.of(username, *roles)
    db.session.commit()
    return actors


@pytest.fixture
def login_as(app: Any, people: dict[str, Actor]) -> Any:
    def sign_in(username: str) -> Browser:
        browser = Browser(app)
        response = browser.login(username)
        assert response.status_code == 302, response.get_data(as_text=True)
        return browser

    return sign_in


@pytest.fixture
def three_steps(engine: Engine) -> Engine:
    engine.deploy(read_files(THREE_STEPS))
    return engine


def request_for_approval(
    engine: Engine, requester: Actor, subject: str = "Printer paper", amount: int = 300
) -> int:
    """Start three_steps as `requester`, enter the request; returns the id of the approval task."""
    instance_id = engine.start_process("three_steps", {}, requester)
    enter = next(t for t in engine.tasks_for(requester).tasks if t.instance_id == instance_id)
    engine.complete_task(enter.id, requester, {"subject": subject, "amount": amount})
    manager = Actor.of("someone", "manager")
    return next(t.id for t in engine.tasks_for(manager, limit=500).tasks if t.instance_id == instance_id)


def entry_task(engine: Engine, requester: Actor) -> int:
    """Start three_steps as `requester`; returns the id of its first task (enter the request)."""
    instance_id = engine.start_process("three_steps", {}, requester)
    return next(t.id for t in engine.tasks_for(requester).tasks if t.instance_id == instance_id)
