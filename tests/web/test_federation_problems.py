"""What went wrong with federation, seen and acted on by an admin: received activities whose
application failed (listed with their error, applied again once the cause is gone) and deliveries
given up (sent again once the peer is back; never to a blocked domain). From the shell
(`halles inbox failed|retry`, `halles deliveries retry`) and from the peers page."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select

from tests.web.seed import seed


@pytest.fixture
def failed_item(app, monkeypatch):
    """A received activity whose application failed (the handler raised), as the worker records it."""
    from node import worker
    from node.extensions import db
    from node.fedi import worker as fedi_worker
    from node.fedi.models import InboxItem

    with app.app_context():
        item = InboxItem(activity_id="http://lyon.test/activities/1", activity_type="Like",
                         signer="http://lyon.test/actor",
                         activity={"id": "http://lyon.test/activities/1", "type": "Like",
                                   "actor": "http://lyon.test/actor", "object": "http://lyon.test/events/1"})
        db.session.add(item)
        db.session.commit()
        item_id = item.id

    def broken(_activity):
        raise RuntimeError("column events.kind does not exist")

    with monkeypatch.context() as patched:
        patched.setattr(fedi_worker, "apply", broken)
        worker.run_once(app)
    assert item_state(app, item_id) == ("failed", "RuntimeError: column events.kind does not exist")
    return item_id


def item_state(app, item_id: int) -> tuple[str, str | None]:
    from node.extensions import db
    from node.fedi.models import InboxItem

    with app.app_context():
        row = db.session.execute(select(InboxItem.state, InboxItem.error).where(InboxItem.id == item_id)).one()
        db.session.remove()
    return tuple(row)


def add_dead_deliveries(app, counts: dict[str, int], *, blocked: tuple[str, ...] = ()) -> None:
    from node.common.timeutil import utcnow
    from node.extensions import db
    from node.fedi.models import Delivery, OutboxEntry, RemoteServer

    with app.app_context():
        entry = OutboxEntry(activity_id="http://127.0.0.1:5000/activities/x", activity_type="Create",
                            object_id="http://127.0.0.1:5000/events/x", audience="public",
                            activity={"id": "http://127.0.0.1:5000/activities/x", "type": "Create"})
        db.session.add(entry)
        db.session.flush()
        day_ago = utcnow() - timedelta(days=1)
        for domain, count in counts.items():
            for n in range(count):
                db.session.add(Delivery(outbox_entry_id=entry.id, inbox_url=f"http://{domain}/inbox/{n}", domain=domain,
                                        state="dead", attempts=12, created_at=day_ago, next_attempt_at=day_ago,
                                        last_error="connection refused"))
        for domain in blocked:
            db.session.add(RemoteServer(domain=domain, blocked=True))
        db.session.commit()


def delivery_states(app) -> dict[str, list[tuple[str, int]]]:
    from node.extensions import db
    from node.fedi.models import Delivery

    with app.app_context():
        rows = db.session.execute(select(Delivery.domain, Delivery.state, Delivery.attempts).order_by(Delivery.id))
        found: dict[str, list[tuple[str, int]]] = {}
        for domain, state, attempts in rows:
            found.setdefault(domain, []).append((state, attempts))
        db.session.remove()
    return found


def test_failed_activities_are_listed_and_applied_again_from_the_shell(app, failed_item):
    runner = app.test_cli_runner()
    listing = runner.invoke(args=["inbox", "failed"])
    assert listing.exit_code == 0, listing.output
    assert listing.output.startswith("1 received activities failed:")
    assert f"#{failed_item}" in listing.output and "Like http://lyon.test/activities/1" in listing.output
    assert "from http://lyon.test/actor" in listing.output and "column events.kind does not exist" in listing.output

    # An id that is not a failed activity: said, and nothing changes.
    wrong = runner.invoke(args=["inbox", "retry", str(failed_item), "999"])
    assert wrong.exit_code != 0 and "no failed received activity with id 999" in wrong.output
    assert item_state(app, failed_item)[0] == "failed"
    assert runner.invoke(args=["inbox", "retry", "zero"]).exit_code != 0

    # The cause is gone (the handler works again): applied again by the worker, as if just received.
    again = runner.invoke(args=["inbox", "retry", str(failed_item)])
    assert again.exit_code == 0 and again.output.strip() == "1 failed activities queued again for the worker"
    assert item_state(app, failed_item) == ("pending", None)
    from node import worker

    worker.run_once(app)
    assert item_state(app, failed_item) == ("ignored", "unsupported activity type")
    assert runner.invoke(args=["inbox", "failed"]).output.strip() == "0 received activities failed"
    assert runner.invoke(args=["inbox", "retry"]).output.strip() == "0 failed activities queued again for the worker"


def test_given_up_deliveries_are_sent_again_from_the_shell_but_never_to_a_blocked_domain(app):
    add_dead_deliveries(app, {"lyon.test": 2, "nantes.test": 1, "spam.test": 1}, blocked=("spam.test",))
    runner = app.test_cli_runner()
    only = runner.invoke(args=["deliveries", "retry", "--domain", "Nantes.test"])
    assert only.output.strip() == "1 given-up deliveries queued again for Nantes.test"
    assert delivery_states(app)["nantes.test"] == [("pending", 0)]
    assert delivery_states(app)["lyon.test"] == [("dead", 12)] * 2
    every = runner.invoke(args=["deliveries", "retry"])
    assert every.exit_code == 0 and every.output.strip() == "2 given-up deliveries queued again"
    states = delivery_states(app)
    assert states["lyon.test"] == [("pending", 0)] * 2 and states["spam.test"] == [("dead", 12)]


def test_the_peers_page_shows_the_problems_and_sends_them_round_again(app, client, failed_item, login):
    from node.extensions import db
    from node.fedi.models import InboxItem

    seeded = seed(app)
    add_dead_deliveries(app, {"lyon.test": 3, "spam.test": 1}, blocked=("spam.test",))
    login(client, seeded.admin_email)
    office = client.get("/office").get_data(as_text=True)
    assert 'href="/admin/peers#problems"' in office

    page = client.get("/admin/peers?lang=en").get_data(as_text=True)
    assert "Federation problems" in page
    assert "<strong>lyon.test</strong> — 3 deliveries" in page and "spam.test</strong>" not in page
    assert "column events.kind does not exist" in page and f"#{failed_item}" in page
    french = client.get("/admin/peers?lang=fr").get_data(as_text=True)
    assert "Problèmes de fédération" in french and "3 envois" in french and "Les appliquer de nouveau" in french

    sent = client.post("/admin/peers?lang=en", data={"form": "retry-deliveries"}, follow_redirects=True)
    assert "3 deliveries will be sent again." in sent.get_data(as_text=True)
    assert delivery_states(app)["lyon.test"] == [("pending", 0)] * 3
    applied = client.post("/admin/peers", data={"form": "retry-inbox"}, follow_redirects=True)
    assert "1 activity will be applied again." in applied.get_data(as_text=True)
    assert item_state(app, failed_item) == ("pending", None)
    with app.app_context():
        assert db.session.scalar(select(InboxItem.processed_at).where(InboxItem.id == failed_item)) is None
    # Nothing left to show: the section is gone.
    assert "Federation problems" not in client.get("/admin/peers").get_data(as_text=True)


def test_only_admins_send_problems_round_again(app, client, failed_item, login):
    seeded = seed(app)
    login(client, seeded.office_email)
    assert client.post("/admin/peers", data={"form": "retry-inbox"}).status_code == 403
    assert item_state(app, failed_item)[0] == "failed"
    office = client.get("/office").get_data(as_text=True)
    assert "received activities could not be applied" in office or "activités reçues" in office
    assert 'href="/admin/peers#problems"' not in office
