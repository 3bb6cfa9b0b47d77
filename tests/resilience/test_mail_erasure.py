"""Erasure reaches the mail queue: mail to an erased address that has not left is dropped, mail that
left keeps no recipient and no body (the name and the secret links were in it), and the mail worker
copes with rows erased under its feet (real SMTP on 127.0.0.1)."""

from __future__ import annotations

from sqlalchemy import select

EVENT_A = "http://127.0.0.1:5000/events/atelier-velo"
EVENT_B = "http://127.0.0.1:5000/events/fete-de-quartier"
NADIA = "nadia@collectif.example"


def mails(app) -> list[tuple[str, str, str, str]]:
    from node.extensions import db
    from node.mail.models import OutgoingEmail

    with app.app_context():
        rows = db.session.execute(select(OutgoingEmail.to_address, OutgoingEmail.subject, OutgoingEmail.body_text,
                                         OutgoingEmail.status).order_by(OutgoingEmail.id)).all()
        db.session.remove()
    return [tuple(row) for row in rows]


def queue(app, specs: list[tuple[str, str, str, str]]) -> None:
    from node.extensions import db
    from node.mail.services import queue_email

    with app.app_context():
        for to, subject, body, status in specs:
            queue_email(to, subject, body).status = status
        db.session.commit()


SPECS = [
    (NADIA, "Inscription — Atelier vélo", f"Bonjour Nadia,\nhttp://x/registrations/s3cr3t/erase\n{EVENT_A}", "sent"),
    (NADIA, "Rappel — Atelier vélo", f"Bonjour Nadia,\n{EVENT_A}", "queued"),
    (NADIA, "Changement — Atelier vélo", f"Bonjour Nadia,\n{EVENT_A}", "failed"),
    (NADIA, "Inscription — Fête de quartier", f"Bonjour Nadia,\n{EVENT_B}", "queued"),
    ("karim@example.org", "Inscription — Atelier vélo", f"Bonjour Karim,\n{EVENT_A}", "queued"),
]


def test_erasure_of_one_registration_scrubs_its_mail_and_keeps_the_rest(app):
    from node.extensions import db
    from node.mail.services import erase_recipient

    queue(app, SPECS)
    with app.app_context():
        assert erase_recipient(NADIA, mentioning=EVENT_A) == (2, 1)
        db.session.commit()
    assert mails(app) == [
        ("", "Inscription — Atelier vélo", "", "sent"),  # what was sent, with no one and nothing in it
        (NADIA, "Inscription — Fête de quartier", f"Bonjour Nadia,\n{EVENT_B}", "queued"),  # her other event
        ("karim@example.org", "Inscription — Atelier vélo", f"Bonjour Karim,\n{EVENT_A}", "queued"),
    ]
    assert not any(NADIA in to or "Nadia" in body for to, _s, body, _st in mails(app)[:1])


def test_erasure_of_an_address_drops_every_message_to_it(app):
    from node.extensions import db
    from node.mail.services import erase_recipient

    queue(app, SPECS)
    with app.app_context():
        assert erase_recipient(NADIA) == (3, 1)
        assert erase_recipient("") == (0, 0)
        db.session.commit()
    assert [to for to, *_ in mails(app)] == ["", "karim@example.org"]


def test_a_body_that_merely_looks_like_a_pattern_is_matched_literally(app):
    from node.extensions import db
    from node.mail.services import erase_recipient

    queue(app, [(NADIA, "a", "rendez-vous à 100% vélo", "queued"), (NADIA, "b", "rendez-vous à 100 vélos", "queued")])
    with app.app_context():
        assert erase_recipient(NADIA, mentioning="100%") == (1, 0)
        db.session.commit()
    assert [subject for _to, subject, *_ in mails(app)] == ["b"]


def test_the_mail_worker_copes_with_rows_erased_while_it_sends(make_app, smtp_server, monkeypatch):
    from node.extensions import db
    from node.mail import services
    from node.mail.models import OutgoingEmail

    app = make_app(HALLES_SMTP_URL=smtp_server.url)
    queue(app, [(NADIA, "one", f"Bonjour Nadia,\n{EVENT_A}", "queued"),
                (NADIA, "two", f"Bonjour Nadia,\n{EVENT_A}", "queued"),
                ("karim@example.org", "three", "Bonjour Karim", "queued")])
    original = services.sender_address
    erased = []

    def erase_during_the_first_send():
        # Another request (its own session and connection) erases Nadia while "one" is being sent.
        if not erased:
            with app.app_context():
                erased.append(services.erase_recipient(NADIA))
                db.session.commit()
        return original()

    monkeypatch.setattr(services, "sender_address", erase_during_the_first_send)
    with app.app_context():
        sent, failed = services.send_pending()
        assert failed == 0
        sent_subjects = db.session.scalars(select(OutgoingEmail.subject).where(OutgoingEmail.status == "sent")).all()
        assert sent == 2 and sent_subjects == ["three"]  # "one" did leave, though its row is gone
    assert erased == [(2, 0)]
    delivered = smtp_server.wait_for(2)
    # "one" was already on its way; "two" never left; "three" went as usual.
    assert sorted(message["Subject"] for message in delivered) == ["one", "three"]
    assert mails(app) == [("karim@example.org", "three", "Bonjour Karim", "sent")]
