"""Hostile input on the HTTP API and the web forms: random JSON (and not-JSON) bodies on every write
route never give a 5xx, and an answer of 4xx never changes a row; schemathesis generates requests from
/api/v1/openapi.json (valid and invalid) and none gives a 5xx either."""

from __future__ import annotations

import json
import re

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error

from tests.resilience import tally
from tests.resilience.support import seed_world

LIMITS_OFF = {"HALLES_RATE_LIMIT_REGISTRATIONS": "off", "HALLES_RATE_LIMIT_LOGIN": "off",
              "HALLES_RATE_LIMIT_INBOX": "off"}
WRITE_METHODS = ("POST", "PUT", "PATCH")
_PARAM = re.compile(r"<(?:[a-z]+:)?([a-z_]+)>")


WEB_ADMIN = "web-admin@example.org"
PASSWORD = "correct horse battery staple"


@pytest.fixture
def world(make_app):
    from node.extensions import db
    from node.members import services as members

    app = make_app(**LIMITS_OFF)
    seeded = seed_world(app)
    with app.app_context():
        members.set_password(members.create_user(None, WEB_ADMIN, "admin"), PASSWORD)
        db.session.commit()
    return app, seeded


def write_routes(app, paths: dict, *, prefix: str) -> list[tuple[str, str]]:
    """(method, concrete URL) for every write route under ``prefix``, path values from the seed."""
    found = set()
    for rule in app.url_map.iter_rules():
        if not rule.rule.startswith(prefix) or rule.rule.startswith("/static"):
            continue
        url = _PARAM.sub(lambda match: str(paths.get(match.group(1), "x")), rule.rule)
        for method in sorted(rule.methods & set(WRITE_METHODS)):
            found.add((method, url))
    return sorted(found)


def schema_field_names(app) -> list[str]:
    document = app.test_client().get("/api/v1/openapi.json").get_json()
    names = {name for schema in document["components"]["schemas"].values()
             for name in (schema.get("properties") or {})}
    return sorted(names)


scalars = (st.none() | st.booleans() | st.integers(-2**63, 2**63) | st.integers(-5, 5)
           | st.floats(allow_nan=False, allow_infinity=False)
           | st.text(max_size=40) | st.text(min_size=300, max_size=2000)
           | st.sampled_from(["", " ", "2031-05-12T19:00:00", "2031-05-12T19:00:00+02:00", "2031-02-30T10:00:00Z",
                              "1999-01-01T00:00:00Z", "9999-12-31T23:59:59Z", "Europe/Paris", "Mars/Olympus",
                              "FREQ=SECONDLY", "FREQ=DAILY;COUNT=100000", "admin", "member", "org_manager",
                              "public", "network", "private", "a@b", "x@example.org", "<script>alert(1)</script>",
                              "'; DROP TABLE users; --", "\x00", "é" * 50, "1", "-1", "0"]))
json_values = st.recursive(scalars, lambda children: st.lists(children, max_size=4)
                           | st.dictionaries(st.text(max_size=10), children, max_size=4), max_leaves=12)


def bodies(field_names: list[str]):
    shaped = st.dictionaries(st.sampled_from(field_names), json_values, max_size=10)
    raw = st.sampled_from([b"{", b"", b"[]", b"null", b'"text"', b"\xff\xfe", b'{"a": NaN}',
                           b"[" * 5000 + b"]" * 5000, b'{"title": "' + b"x" * 1_100_000 + b'"}'])
    return st.one_of(shaped, shaped, json_values.map(lambda value: value), raw)


def post(client, method: str, url: str, body, headers: dict, content_type: str):
    if isinstance(body, bytes):
        data = body
    else:
        data = json.dumps(body)
    return client.open(url, method=method, data=data, headers={**headers, "Content-Type": content_type})


@settings(max_examples=200, deadline=None, database=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                   HealthCheck.too_slow, HealthCheck.data_too_large])
@given(data=st.data())
def test_random_bodies_on_api_writes(world, count_rows, data):
    app, seeded = world
    routes = write_routes(app, seeded["paths"], prefix="/api/")
    method, url = data.draw(st.sampled_from(routes), label="route")
    role = data.draw(st.sampled_from(["admin", "admin", "office_manager", "member", "anonymous"]), label="role")
    body = data.draw(bodies(schema_field_names(app)), label="body")
    content_type = data.draw(st.sampled_from(["application/json"] * 6 + ["text/plain", "application/xml", ""]),
                             label="content type")
    client = app.test_client()
    before = count_rows(app)
    response = post(client, method, url, body, seeded["headers"][role], content_type)
    tally.inputs("API: random bodies")
    assert response.status_code < 500, (method, url, response.get_data(as_text=True)[:500])
    if response.status_code >= 400:
        assert response.mimetype == "application/problem+json", (method, url, response.mimetype)
        assert response.get_json()["detail"]
        assert count_rows(app) == before, (method, url, response.status_code, response.get_json())


@settings(max_examples=150, deadline=None, database=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                   HealthCheck.too_slow])
@given(data=st.data())
def test_random_forms_on_web_pages(world, count_rows, data):
    """The web forms (posted by a signed-in admin or a visitor): never a 5xx, a refusal writes nothing."""
    app, seeded = world
    routes = [(method, url) for method, url in write_routes(app, seeded["paths"], prefix="/")
              if not url.startswith(("/api/", "/inbox", "/actor", "/login", "/logout"))]
    method, url = data.draw(st.sampled_from(routes), label="route")
    fields = data.draw(st.dictionaries(
        st.sampled_from(["name", "email", "title", "description", "starts_at", "ends_at", "day", "start", "end",
                         "category", "occurrence", "password", "password_confirm", "role", "message", "reason",
                         "organisation_name", "visibility", "capacity", "consent", "version", "body"])
        | st.text(max_size=8), st.text(max_size=60) | st.sampled_from(["", "0", "-1", "2031-05-12", "25:99"]),
        max_size=8), label="form")
    client = app.test_client()
    if data.draw(st.booleans(), label="signed in"):
        signed = client.post("/login", data={"email": WEB_ADMIN, "password": PASSWORD})
        assert signed.status_code == 302
    before = count_rows(app)
    response = client.open(url, method=method, data=fields)
    tally.inputs("web: random forms")
    assert response.status_code < 500, (method, url, response.get_data(as_text=True)[:800])
    if response.status_code >= 400:
        after = count_rows(app)
        assert after == before, (method, url, response.status_code)


# --- schemathesis --------------------------------------------------------------------------------------

EXAMPLES_PER_OPERATION = 12


def test_openapi_operations_never_answer_a_server_error(world, count_rows):
    app, seeded = world
    schema = schemathesis.openapi.from_wsgi("/api/v1/openapi.json", app)
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) > 40
    headers = seeded["headers"]["admin"]
    tried = 0
    for operation in operations:
        names = [parameter.name for parameter in operation.path_parameters]
        real = {name: seeded["paths"][name] for name in names if name in seeded["paths"]}
        strategy = st.one_of(
            operation.as_strategy(GenerationMode.POSITIVE, path_parameters=real or None),
            operation.as_strategy(GenerationMode.NEGATIVE, path_parameters=real or None),
            operation.as_strategy(GenerationMode.NEGATIVE),
        )

        @settings(max_examples=EXAMPLES_PER_OPERATION, deadline=None, database=None,
                  phases=[Phase.explicit, Phase.generate],
                  suppress_health_check=list(HealthCheck))
        @given(case=strategy, anonymous=st.booleans())
        def run(case, anonymous):
            nonlocal tried
            before = count_rows(app)
            response = case.call(headers={} if anonymous else headers)
            tried += 1
            case.validate_response(response, checks=[not_a_server_error])
            if response.status_code >= 400 and case.method.upper() != "GET":
                assert count_rows(app) == before, (case.method, case.formatted_path, response.status_code)

        try:
            run()
        except Exception as exc:
            raise AssertionError(f"{operation.label}: {exc}") from exc
    tally.inputs("API: schemathesis cases", tried)
    assert tried >= len(operations) * 3


def test_numbers_no_database_holds(world, count_rows):
    """Found by schemathesis: an id of 2^64 in a path or a body reached the driver (500 on both
    backends). Now: unknown URL (404) in a path, 422 with a reason in a body, nothing written."""
    app, seeded = world
    client = app.test_client()
    admin = seeded["headers"]["admin"]
    before = count_rows(app)
    for url in ("/api/v1/bookings/99999999999999999999", "/api/v1/rooms/18446744073709551616",
                "/api/v1/users/9223372036854775808", "/api/v1/sites/9223372036854775808"):
        response = client.get(url, headers=admin)
        assert response.status_code == 404, (url, response.status_code)
    bodies = [
        ("/api/v1/desks", {"site_id": 2**64, "label": "Poste"}),
        ("/api/v1/bookings", {"room_id": 2**64, "starts_at": "2031-01-01T10:00:00Z", "ends_at": "2031-01-01T11:00:00Z",
                              "category": "ngo"}),
        ("/api/v1/events", {"title": "x", "starts_at": "2031-01-01T10:00:00Z", "ends_at": "2031-01-01T11:00:00Z",
                            "location_kind": "online", "online_url": "https://example.org", "organiser_ids": [2**70]}),
    ]
    for url, body in bodies:
        response = client.post(url, json=body, headers=admin)
        assert response.status_code in (404, 422), (url, response.status_code, response.get_data(as_text=True))
        assert response.mimetype == "application/problem+json"
    assert count_rows(app) == before
    tally.inputs("API: out-of-range numbers", 7)


def test_emptied_optional_texts(world):
    """Found by schemathesis: an optional text sent as "" became None before its length check ran,
    and len(None) was a 500."""
    app, seeded = world
    client = app.test_client()
    url = f"/api/v1/organisations/{seeded['org_a']}"
    response = client.patch(url, json={"city": "", "contact_phone": ""}, headers=seeded["headers"]["admin"])
    assert response.status_code == 200, response.get_data(as_text=True)
    too_long = client.patch(url, json={"city": "x" * 121}, headers=seeded["headers"]["admin"])
    assert too_long.status_code == 422 and "city" in too_long.get_json()["detail"]
    tally.inputs("API: emptied optional texts", 2)
