"""JSON Schema forms to fields and submitted forms to typed data, on the product's real forms."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from werkzeug.datastructures import MultiDict

from engine.errors import FieldError
from engine.forms import FormRegistry
from tests.conftest import Clock, make_app
from webapp import form_render

FORMS = Path(__file__).resolve().parents[2] / "forms"


@pytest.fixture(scope="module")
def request_context(tmp_path_factory):
    app = make_app(
        f"sqlite:///{tmp_path_factory.mktemp('forms') / 'f.db'}",
        Clock(),
        BABEL_DEFAULT_TIMEZONE="Europe/Warsaw",
    )
    with app.test_request_context("/"):
        yield app


def schema(ref: str) -> dict:
    return json.loads((FORMS / f"{ref}.json").read_text())


def fields_by_name(form: form_render.RenderedForm) -> dict[str, form_render.Field]:
    return {f.name: f for f in form.fields}


def test_widgets_follow_the_schema(request_context):
    quote = fields_by_name(form_render.build(schema("lead_to_invoice/prepare_quote")))
    assert quote["currency"].widget == "select"
    first = quote["currency"].options[0]
    assert (first.value, first.label) == ("EUR", "Euro")
    assert quote["currency"].value == "EUR"  # the default
    assert quote["payment_terms_days"].widget == "select" and quote["payment_terms_days"].value == "14"
    assert quote["validity_days"].widget == "integer" and quote["validity_days"].attrs["max"] == 180
    assert quote["quote_notes"].widget == "textarea"
    assert quote["lines"].widget == "rows" and len(quote["lines"].rows) == form_render.BLANK_ROWS
    unit_price = quote["lines"].rows[0][2]
    assert unit_price.widget == "decimal" and unit_price.attrs["inputmode"] == "decimal"
    assert unit_price.html_name == "lines[0][unit_price]" and unit_price.required

    repair = fields_by_name(form_render.build(schema("repair_ticket/diagnose_fault")))
    assert repair["warranty_void"].widget == "checkbox"
    dispatch = fields_by_name(form_render.build(schema("repair_ticket/dispatch_ticket")))
    assert dispatch["scheduled_at"].widget == "datetime"
    assert dispatch["technician"].required and not dispatch["dispatch_notes"].required  # may be empty
    lead = fields_by_name(form_render.build(schema("lead_to_invoice/capture_lead")))
    assert lead["email"].widget == "email" and not lead["email"].required  # null allowed
    assert lead["company"].help.startswith("The prospect's company")


def test_submission_becomes_typed_data_the_engine_accepts(request_context):
    form = MultiDict(
        {
            "csrf_token": "ignored",
            "lines[0][product]": "Chair",
            "lines[0][qty]": "2,5",
            "lines[0][unit_price]": "1 200,50",
            "lines[0][discount_percent]": "0",
            "lines[0][tax_rate]": "23",
            "lines[1][product]": "",
            "lines[1][qty]": "",
            "lines[2][product]": "Table",
            "lines[2][qty]": "1",
            "lines[2][unit_price]": "99",
            "lines[2][discount_percent]": "5",
            "lines[2][tax_rate]": "23",
            "validity_days": "30",
            "payment_terms_days": "30",
            "currency": "PLN",
            "quote_notes": "",
        }
    )
    submission = form_render.parse(schema("lead_to_invoice/prepare_quote"), form)
    assert submission.errors == []
    assert submission.data == {
        "lines": [
            {
                "product": "Chair",
                "qty": 2.5,
                "unit_price": "1200.50",
                "discount_percent": "0",
                "tax_rate": "23",
            },
            {"product": "Table", "qty": 1, "unit_price": "99", "discount_percent": "5", "tax_rate": "23"},
        ],
        "validity_days": 30,
        "payment_terms_days": 30,
        "currency": "PLN",
        "quote_notes": "",
    }
    FormRegistry(FORMS).validate("lead_to_invoice/prepare_quote.json", submission.data)


def test_dates_booleans_and_nulls(request_context):
    submission = form_render.parse(
        schema("repair_ticket/intake_ticket"),
        MultiDict({"customer_name": "Ann", "contact_email": "", "purchase_date": "02.11.2025"}),
    )
    assert submission.data["contact_email"] is None
    assert submission.data["purchase_date"] == "2025-11-02"
    assert "product" not in submission.data  # left out: the engine says it is required

    dispatch = form_render.parse(
        schema("repair_ticket/dispatch_ticket"),
        MultiDict({"technician": "tom", "scheduled_at": "2026-11-03T14:30", "dispatch_notes": ""}),
    )
    assert dispatch.data == {
        "technician": "tom",
        "scheduled_at": "2026-11-03T14:30:00+01:00",
        "dispatch_notes": "",
    }
    FormRegistry(FORMS).validate("repair_ticket/dispatch_ticket.json", dispatch.data)

    diagnose = form_render.parse(schema("repair_ticket/diagnose_fault"), MultiDict({"findings": "Broken"}))
    assert diagnose.data["warranty_void"] is False and diagnose.data["parts_needed"] == []
    ticked = form_render.parse(schema("repair_ticket/diagnose_fault"), MultiDict({"warranty_void": "on"}))
    assert ticked.data["warranty_void"] is True


def test_unreadable_values_are_errors_and_the_input_is_kept(request_context):
    quote = schema("lead_to_invoice/prepare_quote")
    submission = form_render.parse(
        quote,
        MultiDict(
            {
                "validity_days": "soon",
                "currency": "BTC",
                "lines[0][product]": "Chair",
                "lines[0][qty]": "a few",
            }
        ),
    )
    assert {e.field for e in submission.errors} == {"validity_days", "currency", "lines/0/qty"}
    rendered = form_render.build(quote, submission.raw, submission.errors)
    fields = fields_by_name(rendered)
    assert fields["validity_days"].value == "soon" and fields["validity_days"].errors == [
        "Enter a whole number."
    ]
    assert fields["lines"].rows[0][1].value == "a few" and fields["lines"].rows[0][1].errors
    assert len(rendered.error_summary()) == 3


def test_undeclared_fields_go_to_the_engine_by_name(request_context):
    submission = form_render.parse(
        schema("purchase_approval/approve_manager"),
        MultiDict({"decision": "approve", "approved_amount": "1", "lines[0][x]": "y"}),
    )
    assert submission.data["approved_amount"] == "1"
    rendered = form_render.build(
        schema("purchase_approval/approve_manager"),
        submission.raw,
        [FieldError("approved_amount", "this field is not part of the form")],
    )
    assert rendered.form_errors == ["approved_amount: This field is not part of the form."]


def test_more_lines_and_minimum_lines(request_context):
    request = schema("purchase_approval/request_purchase")
    lines = fields_by_name(form_render.build(request, {"lines": [{"product": "A"}]}, more_rows="lines"))[
        "lines"
    ]
    assert len(lines.rows) == 1 + 2 * form_render.BLANK_ROWS
    assert lines.rows[0][0].value == "A"
    revise = schema("purchase_approval/revise_request")
    withdrawn = form_render.parse(
        revise, MultiDict({"revision_action": "withdraw", "revision_comment": "No"})
    )
    assert "lines" not in withdrawn.data  # not required when withdrawing: no empty list sent


def test_lines_still_showing_their_defaults_are_blank(request_context):
    table = {
        "type": "object",
        "properties": {
            "lines": {
                "type": "array",
                "items": {
                    "type": "object",
                    "properties": {
                        "product": {"type": "string"},
                        "tax_rate": {"type": "string", "default": "23", "pattern": "^\\d+(\\.\\d+)?$"},
                        "taxed": {"type": "boolean", "default": True},
                    },
                },
            }
        },
    }
    rendered = fields_by_name(form_render.build(table))["lines"]
    assert rendered.rows[0][1].value == "23" and rendered.rows[0][2].value is True
    submission = form_render.parse(
        table,
        MultiDict(
            {
                "lines[0][product]": "",
                "lines[0][tax_rate]": "23",
                "lines[0][taxed]": "on",
                "lines[1][product]": "Chair",
                "lines[1][tax_rate]": "23",
                "lines[1][taxed]": "on",
            }
        ),
    )
    assert submission.data == {"lines": [{"product": "Chair", "tax_rate": "23", "taxed": True}]}
