"""Prices per category (pro rata per minute) and the charter gate on member tariffs."""

from __future__ import annotations

from datetime import datetime

import pytest

from node.common.errors import InvalidInput
from node.spaces.pricing import booking_price_cents, format_euros, hourly_rate_cents, price_for_minutes
from tests.spaces.conftest import TARIFFS, slot

# --- pure pricing ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("rate", "minutes", "expected"),
    [
        (1000, 60, 1000),
        (1000, 90, 1500),
        (1000, 1, 17),  # 16.67 -> 17
        (1000, 67, 1117),  # 1116.67 -> 1117
        (1500, 45, 1125),
        (999, 30, 500),  # 499.5 rounds half up
        (0, 600, 0),
        (4000, 14 * 24 * 60, 1_344_000),
    ],
)
def test_price_is_pro_rata_per_minute(rate, minutes, expected):
    assert price_for_minutes(rate, minutes) == expected


def test_booking_price_uses_the_category_tariff():
    start, end = datetime(2030, 3, 2, 13, 0), datetime(2030, 3, 2, 15, 30)
    assert booking_price_cents(TARIFFS, "member", start, end) == 2500
    assert booking_price_cents(TARIFFS, "small_company", start, end) == 7500


def test_missing_category_is_not_rented():
    with pytest.raises(InvalidInput, match="this room is not rented to small_company"):
        hourly_rate_cents({"ngo": 1000}, "small_company")
    with pytest.raises(InvalidInput, match="unknown category"):
        hourly_rate_cents({"ngo": 1000}, "friends")


def test_format_euros():
    assert format_euros(0) == "0.00"
    assert format_euros(1505) == "15.05"
    assert format_euros(-250) == "-2.50"


# --- through the API ------------------------------------------------------------------------------


@pytest.fixture
def staff(make_user):
    return make_user("office_manager")[1]


@pytest.mark.parametrize("category", ["ngo", "public_service", "small_company", "other"])
def test_api_price_for_each_outside_category(client, staff, room_id, category):
    response = client.post("/api/v1/bookings",
                           json={"room_id": room_id, **slot(5, "14:00", "15:30"), "category": category},
                           headers=staff)
    assert response.status_code == 201, response.get_json()
    booking = response.get_json()
    assert booking["price_cents"] == TARIFFS[category] * 3 // 2
    assert booking["price_euros"] == format_euros(TARIFFS[category] * 3 // 2)


def test_api_price_pro_rata_with_rounding(client, staff, make_room):
    room = make_room(tariffs={"ngo": 1000})
    response = client.post("/api/v1/bookings",
                           json={"room_id": room, **slot(5, "14:00", "15:07"), "category": "ngo"}, headers=staff)
    assert response.get_json()["price_cents"] == 1117


def test_api_category_missing_from_tariffs_is_422(client, staff, make_room, count):
    from node.spaces.models import Booking

    room = make_room(tariffs={"ngo": 1000, "member": 500})
    response = client.post("/api/v1/bookings",
                           json={"room_id": room, **slot(5, "14:00", "15:00"), "category": "small_company"},
                           headers=staff)
    assert response.status_code == 422
    assert response.get_json()["detail"] == "this room is not rented to small_company"
    assert count(Booking) == 0


def test_free_tariff_is_allowed(client, staff, make_room):
    room = make_room(tariffs={"public_service": 0})
    response = client.post("/api/v1/bookings",
                           json={"room_id": room, **slot(5, "14:00", "18:00"), "category": "public_service"},
                           headers=staff)
    assert response.status_code == 201 and response.get_json()["price_cents"] == 0


# --- charter gate ---------------------------------------------------------------------------------


def _book(client, headers, room_id, category, organisation_id, day=5):
    body = {"room_id": room_id, **slot(day, "10:00", "12:00"), "category": category}
    if organisation_id is not None:
        body["organisation_id"] = organisation_id
    return client.post("/api/v1/bookings", json=body, headers=headers)


def test_member_tariff_needs_the_current_charter(client, make_org, make_user, room_id, publish_charter, count):
    from node.spaces.models import Booking

    org = make_org("Les Petits Débrouillards")
    _, manager = make_user("org_manager", org.id)
    version = publish_charter()
    refused = _book(client, manager, room_id, "member", org.id)
    assert refused.status_code == 403
    detail = refused.get_json()["detail"]
    assert f"sign charter version {version}" in detail and "Les Petits Débrouillards" in detail
    assert count(Booking) == 0

    publish_charter(signed_by=(org.id,), version="2099.1")
    accepted = _book(client, manager, room_id, "member", org.id)
    assert accepted.status_code == 201, accepted.get_json()
    assert accepted.get_json()["price_cents"] == 2 * TARIFFS["member"]


def test_signature_of_an_older_version_is_not_enough(client, make_org, make_user, room_id, publish_charter):
    org = make_org()
    _, manager = make_user("org_manager", org.id)
    publish_charter(signed_by=(org.id,))
    assert _book(client, manager, room_id, "member", org.id).status_code == 201
    newer = publish_charter()
    refused = _book(client, manager, room_id, "member", org.id, day=6)
    assert refused.status_code == 403 and newer in refused.get_json()["detail"]


def test_staff_are_gated_too_because_the_price_is_the_organisations(client, make_org, make_user, room_id,
                                                                    publish_charter):
    org = make_org()
    _, staff = make_user("office_manager")
    publish_charter()
    assert _book(client, staff, room_id, "member", org.id).status_code == 403
    # The outside tariffs stay open to the same organisation.
    assert _book(client, staff, room_id, "ngo", org.id).status_code == 201


def test_member_tariff_without_organisation_is_422(client, make_user, room_id):
    _, staff = make_user("admin")
    response = _book(client, staff, room_id, "member", None)
    assert response.status_code == 422 and "organisation_id" in response.get_json()["detail"]


def test_resident_tariff_needs_a_resident_organisation(client, make_org, make_user, room_id, publish_charter):
    visitor = make_org("Visiting NGO", resident=False)
    resident = make_org("Resident NGO", resident=True)
    _, staff = make_user("office_manager")
    publish_charter(signed_by=(visitor.id, resident.id))
    refused = _book(client, staff, room_id, "resident_member", visitor.id)
    assert refused.status_code == 403 and "resident" in refused.get_json()["detail"]
    accepted = _book(client, staff, room_id, "resident_member", resident.id)
    assert accepted.status_code == 201
    assert accepted.get_json()["price_cents"] == 2 * TARIFFS["resident_member"]


def test_no_charter_published_yet_lets_members_book(client, make_org, make_user, room_id):
    org = make_org()
    _, manager = make_user("org_manager", org.id)
    assert _book(client, manager, room_id, "member", org.id).status_code == 201


def test_organisation_that_left_cannot_book(app, client, make_org, make_user, room_id):
    from node.common.timeutil import utcnow
    from node.extensions import db
    from node.organisations.models import Organisation

    org = make_org()
    _, staff = make_user("office_manager")
    with app.app_context():
        db.session.get(Organisation, org.id).deleted_at = utcnow()
        db.session.commit()
    response = _book(client, staff, room_id, "ngo", org.id)
    assert response.status_code == 422 and "left" in response.get_json()["detail"]
