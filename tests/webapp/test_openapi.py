"""The OpenAPI description is kept true: every route of the app under /api/v1 is described with
its methods and every described operation exists; the document is valid OpenAPI 3.1; and
`conforms` (used by every call in test_api.py) holds real responses to the documented status
codes, media types, headers and schemas."""

from __future__ import annotations

import re
from functools import cache
from typing import Any

import pytest
from jsonschema import Draft202012Validator, FormatChecker
from openapi_spec_validator import validate

from webapp import create_app
from webapp.openapi import document

API_PREFIX = "/api/v1"
IGNORED_METHODS = frozenset({"HEAD", "OPTIONS"})  # answered by Flask itself for every route
_CONVERTER = re.compile(r"<(?:[a-z]+:)?([a-z_]+)>")


@cache
def described() -> dict[str, Any]:
    return document()


def conforms(response: Any, method: str, template: str) -> Any:
    """Assert `response` (to `method` on the documented path `template`) is as described;
    returns its JSON body."""
    operation = described()["paths"][template][method.lower()]
    status = str(response.status_code)
    body = response.get_json(silent=True)
    assert status in operation["responses"], (
        f"{method} {template} answered {status}, which its description does not list: {body}"
    )
    documented = operation["responses"][status]
    content = documented["content"]
    assert response.mimetype in content, f"{method} {template} {status}: {response.mimetype} not described"
    schema = {**content[response.mimetype]["schema"], "components": described()["components"]}
    validator = Draft202012Validator(schema, format_checker=FormatChecker())
    problems = [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(body)]
    assert not problems, f"{method} {template} {status} does not match its schema: {problems}"
    for header in documented.get("headers", {}):
        assert header in response.headers, f"{method} {template} {status} lacks the header {header}"
    return body


def app_operations(app: Any) -> set[tuple[str, str]]:
    """(method, OpenAPI path) of every route of the app under /api/v1."""
    found = set()
    for rule in app.url_map.iter_rules():
        if rule.rule.startswith(API_PREFIX + "/"):
            path = _CONVERTER.sub(r"{\1}", rule.rule[len(API_PREFIX) :])
            found |= {(method, path) for method in rule.methods - IGNORED_METHODS}
    return found


def documented_operations() -> set[tuple[str, str]]:
    return {
        (method.upper(), path)
        for path, operations in described()["paths"].items()
        for method in operations
        if method in ("get", "post", "put", "patch", "delete")
    }


@pytest.fixture(scope="module")
def routes_app() -> Any:
    """The app as configured for tests; the routes and the description touch no database."""
    return create_app({"SQLALCHEMY_DATABASE_URI": "sqlite://", "TESTING": True})


def test_every_api_route_is_described_and_every_description_is_a_route(routes_app):
    app = routes_app
    routes = app_operations(app)
    assert len(routes) >= 12
    assert routes - documented_operations() == set(), "routes missing from the OpenAPI description"
    assert documented_operations() - routes == set(), "described operations the app does not have"


def test_path_parameters_are_named_as_in_the_routes():
    for path, operations in described()["paths"].items():
        names = set(re.findall(r"{([a-z_]+)}", path))
        for method, operation in operations.items():
            declared = {p["name"] for p in operation.get("parameters", []) if p["in"] == "path"}
            assert declared == names, (method, path)


def test_the_description_is_valid_openapi_3_1_and_served_without_a_token(routes_app):
    client = routes_app.test_client()
    response = client.get("/api/v1/openapi.json")
    assert response.status_code == 200 and response.mimetype == "application/json"
    served = response.get_json()
    assert served["openapi"] == "3.1.0"
    assert served == described()
    validate(served)  # raises on anything that is not OpenAPI 3.1
    assert served["components"]["securitySchemes"]["bearer"] == {
        "type": "http",
        "scheme": "bearer",
        "description": served["components"]["securitySchemes"]["bearer"]["description"],
    }
    conforms(response, "GET", "/openapi.json")


def test_every_secured_operation_documents_401_and_every_operation_its_refusals():
    for path, operations in described()["paths"].items():
        for method, operation in operations.items():
            responses = operation["responses"]
            success = [code for code in responses if code.startswith("2")]
            assert len(success) == 1, (method, path)
            if operation.get("security") != []:
                assert "401" in responses, (method, path)
            if "{" in path:
                assert "404" in responses, (method, path)
            if "requestBody" in operation:
                assert {"400", "422"} <= set(responses), (method, path)
            for code, response in responses.items():
                media = "application/json" if code.startswith("2") else "application/problem+json"
                assert list(response["content"]) == [media], (method, path, code)


def test_the_schemas_are_valid_json_schema():
    for schema in described()["components"]["schemas"].values():
        Draft202012Validator.check_schema(schema)  # raises, naming the schema's problem
