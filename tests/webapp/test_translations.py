"""The five catalogs cover every string of the current sources (code, templates, forms, processes),
keep the placeholders of their msgids, are compiled, and the app speaks each user's language —
words, dates, numbers and money.

When a test here fails because a string is new: `backoffice i18n extract && backoffice i18n update`,
translate what `update` lists as untranslated in webapp/translations/*/LC_MESSAGES/messages.po,
then `backoffice i18n compile`."""

from __future__ import annotations

from datetime import UTC, date, timedelta
from typing import Any

import pytest
from babel import dates, numbers
from babel.messages.catalog import Catalog
from flask import render_template_string
from flask_babel import format_currency, format_date, format_decimal
from sqlalchemy import select

from engine import Actor
from engine.db import db
from engine.models import User
from engine.users import add_user
from tests.webapp.conftest import PASSWORD_HASH, Browser, entry_task
from webapp import catalogs
from webapp.auth import LANGUAGES

TRANSLATED = ("pl", "lt", "ru", "zh")


@pytest.fixture(scope="module")
def template() -> Catalog:
    """What the sources ask to translate now (extracted afresh, not read from messages.pot)."""
    return catalogs.extract()


@pytest.fixture(scope="module")
def po() -> dict[str, Catalog]:
    return {locale: catalogs.read_catalog(catalogs.po_path(locale), locale) for locale in catalogs.LOCALES}


def _translate(po: dict[str, Catalog], locale: str, msgid: str) -> str:
    message = po[locale].get(msgid)
    assert message is not None and message.string, (locale, msgid)
    return str(message.string)


# -- the catalogs -----------------------------------------------------------------------------------------
def test_a_catalog_for_every_language_a_user_can_pick():
    assert set(catalogs.LOCALES) == set(LANGUAGES)
    for locale in catalogs.LOCALES:
        assert catalogs.po_path(locale).exists(), locale


def test_extraction_covers_code_templates_forms_and_processes(template):
    def sources(msgid: str) -> set[str]:
        message = template.get(msgid)
        assert message is not None, msgid
        return {path for path, _line in message.locations}

    assert "webapp/templates/base.html" in sources("Sign out")
    assert "webapp/auth.py" in sources("Unknown username or wrong password.")
    assert "forms/purchase_approval/request_purchase.json" in sources("Why this purchase is needed.")  # help
    assert "forms/lead_to_invoice/capture_lead.json" in sources("Event or trade fair")  # oneOf title
    assert "processes/lead_to_invoice.bpmn" in sources("Approve quote discount")  # user task name
    assert "processes/repair_ticket.bpmn" in sources("Repair ticket")  # process name
    assert "engine/users.py" in sources("Order entry")  # role title
    # `_(schema["title"])` is not a message called "title"
    assert template.get("title") is None and template.get("description") is None


def test_no_string_of_the_sources_is_missing_from_a_catalog(template, po):
    missing = {locale: catalogs.missing(template, po[locale]) for locale in catalogs.LOCALES}
    report = "\n".join(
        f"{locale}: {len(ids)} missing:\n" + "\n".join(f"    {msgid!r}" for msgid in ids)
        for locale, ids in missing.items()
        if ids
    )
    if report:
        print(report)
    assert not report, (
        "catalogs miss strings; run `backoffice i18n extract && backoffice i18n update`, translate, "
        "`backoffice i18n compile`\n" + report
    )


def test_messages_pot_is_the_extraction_of_the_current_sources(template):
    pot = catalogs.read_catalog(catalogs.POT)
    ids = {message.id for message in template if message.id}
    pot_ids = {message.id for message in pot if message.id}
    assert ids == pot_ids, (
        f"run `backoffice i18n extract`: new {sorted(ids - pot_ids)}, gone {sorted(pot_ids - ids)}"
    )


def test_no_fuzzy_or_empty_translation(po):
    problems = [
        f"{locale}: {'fuzzy' if message.fuzzy else 'empty'}: {message.id!r}"
        for locale, catalog in po.items()
        for message in catalog
        if message.id and (message.fuzzy or not catalogs._translated(message))
    ]
    for locale, catalog in po.items():
        if catalog.fuzzy:
            problems.append(f"{locale}: the whole catalog is marked fuzzy")
    print("\n".join(problems))
    assert not problems


def test_translations_keep_the_placeholders_of_their_msgid(po):
    problems = [
        f"{locale}: {msgid!r} -> {text!r}"
        for locale, catalog in po.items()
        for msgid, text in catalogs.placeholder_mismatches(catalog)
    ]
    print("\n".join(problems))
    assert not problems


def test_placeholder_check_catches_a_lost_or_renamed_placeholder():
    catalog = Catalog(locale="pl")
    catalog.add("Welcome, %(name)s.", "Witaj.", locations=[("webapp/auth.py", 1)])
    catalog.add("Saved %(name)s.", "Zapisano %(nazwa)s.", locations=[("webapp/admin.py", 1)])
    catalog.add("Line %(n)d", "Wiersz %(n)d", locations=[("webapp/templates/x.html", 1)])
    catalog.add(
        "Overdue", "100% po terminie", locations=[("webapp/templates/x.html", 2)]
    )  # bare % in a template
    catalog.add("Discount %", "Rabat %", locations=[("forms/x/y.json", 1)])  # not formatted: fine
    assert [msgid for msgid, _text in catalogs.placeholder_mismatches(catalog)] == [
        "Welcome, %(name)s.",
        "Saved %(name)s.",
        "Overdue",
    ]


def test_mo_files_are_compiled_from_the_current_po_files():
    stale = catalogs.stale_mo()
    assert not stale, f"stale .mo files for {stale}: run `backoffice i18n compile`"


def test_update_keeps_translations_and_adds_new_strings_untranslated(tmp_path):
    old = Catalog(locale="pl")
    old.add("Inbox", "Skrzynka zadań", locations=[("base.html", 1)])
    old.add("Gone", "Zniknęło", locations=[("base.html", 2)])
    path = catalogs.po_path("pl", tmp_path)
    path.parent.mkdir(parents=True)
    path.write_bytes(catalogs._po_bytes(old))

    template = Catalog()
    template.add("Inbox", locations=[("base.html", 1)])
    template.add("Inboxes", locations=[("base.html", 3)])  # similar, but never guessed (no fuzzy)
    catalogs.update_catalogs(template, tmp_path, ["pl", "en"])
    pl = catalogs.read_catalog(path, "pl")
    assert pl.get("Inbox").string == "Skrzynka zadań"
    assert not pl.get("Inboxes").string and not pl.get("Inboxes").fuzzy
    assert catalogs.missing(template, pl) == ["Inboxes"]
    en = catalogs.read_catalog(catalogs.po_path("en", tmp_path), "en")
    assert en.get("Inboxes").string == "Inboxes"  # the source language translates itself

    template.add("Gone", locations=[("base.html", 2)])  # a string that comes back keeps its translation
    catalogs.update_catalogs(template, tmp_path, ["pl"])
    assert catalogs.read_catalog(path, "pl").get("Gone").string == "Zniknęło"

    catalogs.compile_catalogs(tmp_path, ["pl", "en"])
    assert catalogs.stale_mo(tmp_path, ["pl", "en"]) == []


# -- the app in each language --------------------------------------------------------------------------------
@pytest.fixture
def speakers(app: Any) -> dict[str, str]:
    """One sales person per language: locale -> username."""
    users = {}
    for locale in catalogs.LOCALES:
        username = f"sales_{locale}"
        user = add_user(username, ["sales"], display_name=f"Sales {locale}", email=f"{username}@example.com")
        user.password_hash = PASSWORD_HASH
        user.language = locale
        users[locale] = username
    db.session.commit()
    return users


@pytest.fixture
def formats_page(app: Any) -> str:
    """A page showing a number, an amount of money and a date the way the app formats them."""

    @app.get("/_test/formats")
    def formats() -> str:
        return render_template_string(
            "{{ number }}|{{ money }}|{{ day }}",
            number=format_decimal(1234.5),
            money=format_currency(1234.5, "EUR"),
            day=format_date(date(2026, 11, 2), "long"),
        )

    return "/_test/formats"


def _sign_in(app: Any, username: str) -> Browser:
    browser = Browser(app)
    response = browser.login(username)
    assert response.status_code == 302, response.get_data(as_text=True)
    return browser


@pytest.mark.parametrize("locale", TRANSLATED)
def test_the_login_page_speaks_the_browsers_language(app, po, locale):
    html = (
        Browser(app).get("/login", headers={"Accept-Language": f"{locale},en;q=0.5"}).get_data(as_text=True)
    )
    assert f'<html lang="{locale}">' in html
    for msgid in ("Sign in", "Username", "Password"):
        assert _translate(po, locale, msgid) in html, msgid
    assert ">Username<" not in html


@pytest.mark.parametrize("locale", TRANSLATED)
def test_a_user_sees_navigation_and_inbox_in_their_language(app, three_steps, speakers, po, locale, clock):
    entry_task(three_steps, Actor.of(speakers[locale], "sales"))  # due in one day
    html = _sign_in(app, speakers[locale]).page("/inbox")
    assert f'<html lang="{locale}">' in html
    for msgid in ("Inbox", "Sign out", "Sort by", "Overdue only", "Search", "Take it"):
        assert _translate(po, locale, msgid) in html, msgid
    for english in ("Sign out", "Overdue only", "Take it"):
        assert english not in html, english
    due = dates.format_datetime(clock() + timedelta(days=1), "short", tzinfo=UTC, locale=locale)
    english_due = dates.format_datetime(clock() + timedelta(days=1), "short", tzinfo=UTC, locale="en")
    assert due != english_due
    assert due in html


def test_dates_numbers_and_money_follow_the_users_language(app, speakers, formats_page):
    shown = {}
    for locale, username in speakers.items():
        number, money, day = _sign_in(app, username).page(formats_page).split("|")
        assert number == numbers.format_decimal(1234.5, locale=locale)
        assert money == numbers.format_currency(1234.5, "EUR", locale=locale)
        assert day == dates.format_date(date(2026, 11, 2), "long", locale=locale)
        shown[locale] = (number, money, day)
    for locale in ("pl", "lt", "ru"):  # a decimal comma and a space between thousands: 1 234,5
        assert shown[locale][0] != shown["en"][0] and "," in shown[locale][0], locale
        assert shown[locale][1] != shown["en"][1], locale
    assert len({day for _number, _money, day in shown.values()}) == len(shown)  # each its own date


def test_a_language_picked_on_the_profile_applies_at_once(app, speakers, po):
    browser = _sign_in(app, speakers["en"])
    assert "Sign out" in browser.page("/inbox")
    response = browser.post("/profile", {"display_name": "Sales en", "email": "", "language": "lt"})
    assert response.status_code == 302
    db.session.commit()
    assert db.session.scalar(select(User.language).where(User.username == speakers["en"])) == "lt"
    html = browser.page("/inbox")
    assert _translate(po, "lt", "Sign out") in html and "Sign out" not in html


def test_form_labels_help_texts_and_choices_are_translated(app, po):
    from webapp import form_render

    schema = {
        "title": "Approve purchase request",
        "type": "object",
        "properties": {
            "decision": {
                "type": "string",
                "title": "Decision",
                "description": "Approve, or reject and send it back with your reason.",
                "oneOf": [{"const": "approve", "title": "Approve"}, {"const": "reject", "title": "Reject"}],
            }
        },
    }
    with app.test_request_context("/", headers={"Accept-Language": "ru"}):
        form = form_render.build(schema)
    field = form.fields[0]
    assert form.title == _translate(po, "ru", "Approve purchase request")
    assert field.label == _translate(po, "ru", "Decision")
    assert field.help == _translate(po, "ru", "Approve, or reject and send it back with your reason.")
    assert [o.label for o in field.options] == [
        _translate(po, "ru", "Approve"),
        _translate(po, "ru", "Reject"),
    ]


def test_translated_pages_render_without_format_errors(app, speakers):
    """Every template string goes through `%` (Jinja's newstyle gettext): a stray % would raise."""
    for locale in TRANSLATED:
        browser = _sign_in(app, speakers[locale])
        for url in ("/", "/inbox", "/profile"):
            assert f'<html lang="{locale}">' in browser.page(url)
