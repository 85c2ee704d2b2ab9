"""Browser tests: the real app on 127.0.0.1, driven through Debian's chromium by Playwright.

The office runs in a thread of the test process: a fresh SQLite file, the real processes/ and
forms/, a user for every role, the master data of the demo, and a clock the test moves
(`LiveOffice.travel_to` fires the timers that fell due; the scheduler is off in tests).

Each person works in a browser window of their own (`Person`) and signs in through the real
sign-in page. Every page they see is kept as a full-page screenshot in artifacts/screenshots/
(git-ignored), named `<test>-<step>.png`; when a test fails, the page each person was looking
at is kept as `<test>-failed-<n>-<user>.png`.

Without chromium the tests skip with the reason; under CI=true they fail instead.
"""

from __future__ import annotations

import logging
import os
import re
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from engine import Engine
from engine.business import all as business_tables  # noqa: F401  (every table, for create_all)
from engine.db import db
from tests.conftest import Clock

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = Path(os.environ.get("BROWSER_CHROMIUM", "/usr/bin/chromium"))
SHOTS = ROOT / "artifacts" / "screenshots"
LAUNCH_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-dev-shm-usage",  # containers often have a tiny /dev/shm
]
PASSWORD = "browser journeys 2026"
TIMEOUT_MS = 10_000

# username, roles, display name
STAFF: list[tuple[str, list[str], str]] = [
    ("sally", ["sales"], "Sally Sales"),
    ("sue", ["sales"], "Sue Seller"),
    ("mona", ["manager"], "Mona Manager"),
    ("dora", ["director", "manager"], "Dora Director"),
    ("olga", ["order_entry"], "Olga Orders"),
    ("ivan", ["inventory"], "Ivan Inventory"),
    ("alex", ["accounting"], "Alex Accounting"),
    ("cora", ["customer_service"], "Cora Service"),
    ("paul", ["purchasing"], "Paul Purchasing"),
    ("max", ["purchasing", "manager"], "Max Both"),  # requests and approves: four-eyes applies
    ("desi", ["designer"], "Desi Designer"),
    ("ada", ["admin"], "Ada Admin"),
]


# -- chromium, or the reason there is none ---------------------------------------------------------------
def _unavailable(reason: str) -> None:
    if os.environ.get("CI") == "true":
        pytest.fail(f"CI=true: the browser tests must run, but {reason}", pytrace=False)
    pytest.skip(reason)


@pytest.fixture(scope="package")
def browser() -> Iterator[Any]:
    if not CHROMIUM.exists():
        _unavailable(f"no chromium at {CHROMIUM} (apt-get install chromium, or set BROWSER_CHROMIUM)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError as exc:
        _unavailable(f"Playwright for Python is not installed ({exc}); pip install -e '.[test]'")
    playwright = sync_playwright().start()
    try:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=LAUNCH_ARGS)
        try:
            yield chromium
        finally:
            chromium.close()
    finally:
        playwright.stop()


# -- the office, served --------------------------------------------------------------------------------------
class LiveOffice:
    """The app served on 127.0.0.1 and the clock it runs on."""

    def __init__(self, app: Any, clock: Clock, url: str) -> None:
        self.app = app
        self.clock = clock
        self.url = url

    @property
    def engine(self) -> Engine:
        engine: Engine = self.app.extensions["engine"]
        return engine

    def travel_to(self, moment: datetime) -> int:
        """Move the clock to `moment` and fire every timer due by then, as the scheduler would."""
        self.clock.current = moment
        with self.app.app_context():
            return self.engine.fire_due_timers(moment)

    def run(self, work: Callable[[Engine], Any]) -> Any:
        """Run `work(engine)` in an application context (set-up the pages do not offer)."""
        with self.app.app_context():
            return work(self.engine)


@contextmanager
def serve_office(
    folder: Path,
    staff: list[tuple[str, list[str], str]] = STAFF,
    prepare: Callable[[Engine], Any] | None = None,
) -> Iterator[LiveOffice]:
    """A fresh office in `folder` with `staff` (password PASSWORD), served on a free port until the
    block ends; `prepare(engine)` runs before the first request (e.g. the demo's data)."""
    from flask_migrate import upgrade
    from werkzeug.serving import make_server

    from engine.business.seed import seed_master_data
    from engine.users import add_user
    from webapp import create_app

    clock = Clock()
    app = create_app(
        {
            "SQLALCHEMY_DATABASE_URI": f"sqlite:///{folder / 'office.db'}",
            "SQLALCHEMY_ENGINE_OPTIONS": {"connect_args": {"timeout": 30}},
            "SECRET_KEY": "browser-tests",
            "CLOCK": clock,
            "FORMS_DIR": str(ROOT / "forms"),
            "PROCESSES_DIR": str(ROOT / "processes"),
            "MAIL_SERVER": None,  # mail goes to the outbox table only
        }
    )
    with app.app_context():
        upgrade()
        db.create_all()
        engine: Engine = app.extensions["engine"]
        processes = sorted((ROOT / "processes").iterdir())
        engine.deploy({p.name: p.read_bytes() for p in processes if p.suffix in (".bpmn", ".dmn")})
        for username, roles, name in staff:
            add_user(username, roles, password=PASSWORD, display_name=name, email=f"{username}@example.com")
        seed_master_data()
        if prepare is not None:
            prepare(engine)
        db.session.remove()
    # one log line per request buries a failure's report; the screenshots tell the story
    request_log = logging.getLogger("werkzeug")
    level = request_log.level
    request_log.setLevel(logging.WARNING)
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, name="live-office", daemon=True)
    thread.start()
    try:
        yield LiveOffice(app, clock, f"http://127.0.0.1:{server.server_port}")
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)
        request_log.setLevel(level)
        with app.app_context():
            db.engine.dispose()


@pytest.fixture(scope="package")
def live(browser: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveOffice]:
    """One office for the journeys (each journey works with its own documents)."""
    with serve_office(tmp_path_factory.mktemp("browser-office")) as office:
        yield office


# -- people in browser windows -------------------------------------------------------------------------------
class Shots:
    """Full-page screenshots of one test, numbered in the order they were taken."""

    def __init__(self, test_name: str) -> None:
        self.test = re.sub(r"[^\w-]+", "_", test_name)
        self.count = 0
        SHOTS.mkdir(parents=True, exist_ok=True)
        for old in SHOTS.glob(f"{self.test}-*.png"):
            old.unlink()

    def take(self, page: Any, step: str) -> Path:
        self.count += 1
        label = re.sub(r"[^\w-]+", "_", step)
        path = SHOTS / f"{self.test}-{self.count:02d}-{label}.png"
        page.screenshot(path=str(path), full_page=True)
        return path


class Person:
    """One user in a browser window of their own; every page they see is screenshotted."""

    def __init__(self, browser: Any, office: LiveOffice, shots: Shots, username: str) -> None:
        self.username = username
        self.office = office
        self.shots = shots
        self.context = browser.new_context(
            base_url=office.url, locale="en-GB", timezone_id="UTC", viewport={"width": 1280, "height": 900}
        )
        self.context.set_default_timeout(TIMEOUT_MS)
        self.page = self.context.new_page()

    # navigation, each followed by a screenshot
    def snap(self, step: str) -> Path:
        return self.shots.take(self.page, f"{self.username}-{step}")

    def open(self, path: str, step: str) -> Any:
        response = self.page.goto(path)
        self.snap(step)
        return response

    def click(self, target: Any, step: str) -> Any:
        """Click a link or a submit button; returns the response of the page it leads to."""
        with self.page.expect_navigation() as navigation:
            target.click()
        response = navigation.value
        self.snap(step)
        return response

    def sign_in(self, password: str = PASSWORD) -> Any:
        self.open("/login", "sign-in")
        self.page.get_by_label("Username").fill(self.username)
        self.page.get_by_label("Password").fill(password)
        return self.click(self.main.get_by_role("button", name="Sign in"), "signed-in")

    def menu(self, menu: str, item: str, step: str) -> Any:
        """Open a menu of the top bar (*Documents*) and follow one of its items (*Invoices*)."""
        self.page.locator("header summary", has_text=menu).click()
        return self.click(self.page.locator("header").get_by_role("link", name=item, exact=True), step)

    def start(self, label: str, step: str) -> Any:
        """Start a process from the menu: *Start*, then e.g. *Capture a lead*."""
        return self.menu("Start", label, step)

    def sign_out(self) -> Any:
        return self.click(self.page.get_by_role("button", name="Sign out"), "signed-out")

    # the page
    @property
    def main(self) -> Any:
        return self.page.locator("main")

    def text(self) -> str:
        return str(self.main.inner_text())

    def flashes(self) -> list[str]:
        return [str(t).strip() for t in self.page.locator(".flash").all_inner_texts()]

    @staticmethod
    def _label(label: str) -> re.Pattern[str]:
        return re.compile(rf"^{re.escape(label)}(\s*\*)?$")  # a required field's label ends with `*`

    def field(self, label: str) -> Any:
        """The input labelled `label`."""
        return self.main.get_by_label(self._label(label))

    def field_box(self, label: str) -> Any:
        """The box of the input labelled `label`: label, input, help and errors."""
        return self.main.locator(".field").filter(has=self.page.get_by_label(self._label(label)))

    def fill(self, values: dict[str, str]) -> None:
        """Fill fields by their label, as a person reads them; selects by the option they see."""
        for label, value in values.items():
            self.fill_field(self.field(label), value)

    def fill_named(self, values: dict[str, str]) -> None:
        """Fill fields by name: the cells of a table of lines, which share their labels."""
        for name, value in values.items():
            self.fill_field(self.main.locator(f'[name="{name}"]'), value)

    @staticmethod
    def fill_field(field: Any, value: str) -> None:
        if field.evaluate("e => e.tagName") == "SELECT":
            field.select_option(label=value)
        else:
            field.fill(value)

    def task_link(self, title: str | re.Pattern[str]) -> Any:
        """The link to a task in the inbox."""
        return self.main.locator("a.task-title", has_text=title)

    def open_task(self, title: str | re.Pattern[str], step: str) -> Any:
        self.open("/inbox", f"inbox-before-{step}")
        link = self.task_link(title)
        assert link.count() == 1, f"{self.username}'s inbox: {self.inbox_titles()}"
        return self.click(link, step)

    def inbox_titles(self) -> list[str]:
        return [str(t).strip() for t in self.main.locator("a.task-title").all_inner_texts()]

    def complete(self, step: str, button: str = "Complete task") -> Any:
        response = self.click(self.main.get_by_role("button", name=button), step)
        assert response.status < 400, f"{step}: {response.status}\n{self.text()}"
        return response

    # requests a page would not send: forged on purpose, with a valid CSRF token of this session
    def csrf_token(self) -> str:
        token = self.page.locator('input[name="csrf_token"]').first.get_attribute("value")
        assert token, "no CSRF token on the page"
        return str(token)

    def forge_post(self, path: str, data: dict[str, str]) -> Any:
        form = {"csrf_token": self.csrf_token(), **data}
        return self.context.request.post(self.office.url + path, form=form, max_redirects=0)

    def close(self, failed: bool, n: int = 1) -> None:
        if failed:
            path = SHOTS / f"{self.shots.test}-failed-{n}-{self.username}.png"
            self.page.screenshot(path=str(path), full_page=True)
        self.context.close()


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    report = yield
    if report.when == "call":
        item.stash[_CALL_FAILED] = report.failed
    return report


_CALL_FAILED = pytest.StashKey[bool]()


@pytest.fixture
def shots(request: pytest.FixtureRequest) -> Shots:
    return Shots(request.node.name)


@pytest.fixture
def people(
    request: pytest.FixtureRequest, browser: Any, live: LiveOffice, shots: Shots
) -> Iterator[Callable[..., Person]]:
    """`people("sally")`: Sally in a browser window of her own, signed in (unless sign_in=False)."""
    opened: list[Person] = []

    def open_window(username: str, sign_in: bool = True) -> Person:
        person = Person(browser, live, shots, username)
        opened.append(person)
        if sign_in:
            response = person.sign_in()
            assert response.status == 200 and person.page.url.endswith("/inbox"), person.text()
        return person

    yield open_window
    failed = request.node.stash.get(_CALL_FAILED, False)
    for n, person in enumerate(opened, start=1):
        person.close(failed, n)
