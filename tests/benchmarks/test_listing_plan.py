"""The listing benchmark's query keeps an index plan: a city and a date range, 50 a page, a cursor deep
into the list walk the (starts_at, id) index from the cursor -- no sort of every matching row, no
OFFSET, no scan of every event for the city. Checked on the plan the database reports, not on time."""

from __future__ import annotations

from benchmarks import listing


def test_deep_city_page_walks_the_start_index(app):
    listing.seed(app, 10_000)
    path, _walked = listing.deep_query(app, 200)
    assert "offset" not in path.lower()
    plan = "\n".join(listing.query_plan(app, path))
    assert "ix_event_occurrences_start_id" in plan, plan
    assert "TEMP B-TREE" not in plan and "Sort" not in plan, plan
    response = app.test_client().get(path)
    page = response.get_json()
    assert response.status_code == 200 and len(page["items"]) == listing.PAGE and page["next"]
    assert {item["location"]["city"] for item in page["items"]} == {listing.CITY}
    starts = [item["starts_at"] for item in page["items"]]
    assert starts == sorted(starts)


def test_city_filter_ignores_accents_case_and_spaces(app):
    """The folded city column is kept by the model for every write, not only by the benchmark's SQL."""
    from node.events.models import Event, city_key
    from node.extensions import db

    assert city_key("  Saint-Étienne ") == city_key("SAINT-ETIENNE") == "saint-etienne"
    listing.seed(app, 50)
    with app.app_context():
        event = db.session.get(Event, 2)  # a public one
        event.city = "Saint-Étienne"
        db.session.commit()
        assert event.city_key == "saint-etienne"
        moved = event.uuid
    day = listing.base_day().strftime("%Y-%m-%dT%H:%M:%SZ")
    found = app.test_client().get("/api/v1/events", query_string={
        "scope": "network", "city": " SAINT-ETIENNE", "from": day}).get_json()
    assert [item["id"] for item in found["items"]] == [moved]
