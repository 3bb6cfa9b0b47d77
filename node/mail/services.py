"""Queue email in the same transaction as the change that causes it; the worker sends it over SMTP.

A request never waits for SMTP, and a message survives SMTP being down: it stays queued and is
retried with backoff (1 min, 2, 4 ... capped at 1 h) until ``MAX_ATTEMPTS``, then marked failed."""

from __future__ import annotations

import smtplib
import ssl
from datetime import timedelta
from email.message import EmailMessage
from email.utils import make_msgid
from urllib.parse import unquote, urlsplit

from flask import current_app
from sqlalchemy import delete, select, update
from sqlalchemy.orm.exc import ObjectDeletedError, StaleDataError

from node.common.timeutil import utcnow
from node.extensions import db
from node.mail.models import OutgoingEmail

MAX_ATTEMPTS = 12
SMTP_TIMEOUT_SECONDS = 10


def queue_email(to_address: str, subject: str, body_text: str) -> OutgoingEmail:
    """Add a message to the queue; the caller's commit makes it durable together with its cause."""
    message = OutgoingEmail(to_address=to_address, subject=subject, body_text=body_text)
    db.session.add(message)
    return message


def erase_recipient(address: str, *, mentioning: str | None = None) -> tuple[int, int]:
    """Erasure on request: mail to ``address`` that has not left is dropped (queued or failed rows are
    deleted), and mail that was sent keeps only its row, subject and dates (recipient and body, which
    hold the name and the secret links, are blanked). With ``mentioning``, only messages whose body
    contains that text (e.g. the event's URL, for one registration) are touched, so the person's other
    registrations keep their mail. Does not commit. Returns (dropped, scrubbed)."""
    address = (address or "").strip()
    if not address:
        return 0, 0
    scope = [OutgoingEmail.to_address == address]
    if mentioning:
        scope.append(OutgoingEmail.body_text.contains(mentioning, autoescape=True))
    dropped = db.session.execute(
        delete(OutgoingEmail).where(*scope, OutgoingEmail.status.in_(("queued", "failed")))
        .execution_options(synchronize_session=False)
    ).rowcount or 0
    scrubbed = db.session.execute(
        update(OutgoingEmail).where(*scope, OutgoingEmail.status == "sent")
        .values(to_address="", body_text="", last_error=None)
        .execution_options(synchronize_session=False)
    ).rowcount or 0
    return dropped, scrubbed


def sender_address() -> str:
    configured = current_app.config.get("HALLES_MAIL_FROM")
    if configured:
        return configured
    host = urlsplit(current_app.config["HALLES_URL"]).hostname or "localhost"
    return f"noreply@{host}"


def _connect(url: str) -> smtplib.SMTP:
    parts = urlsplit(url)
    host = parts.hostname or "localhost"
    if parts.scheme == "smtps":
        client: smtplib.SMTP = smtplib.SMTP_SSL(
            host, parts.port or 465, timeout=SMTP_TIMEOUT_SECONDS, context=ssl.create_default_context()
        )
    else:
        client = smtplib.SMTP(host, parts.port or 25, timeout=SMTP_TIMEOUT_SECONDS)
        if parts.scheme == "smtp+starttls":
            client.starttls(context=ssl.create_default_context())
    if parts.username:
        client.login(unquote(parts.username), unquote(parts.password or ""))
    return client


def _backoff(attempts: int) -> timedelta:
    return timedelta(seconds=min(3600, 60 * 2 ** max(0, attempts - 1)))


def send_pending(limit: int = 50) -> tuple[int, int]:
    """Send queued messages whose time has come. Returns (sent, failed_attempts)."""
    url = current_app.config.get("HALLES_SMTP_URL")
    if not url:
        return 0, 0
    now = utcnow()
    pending = db.session.scalars(
        select(OutgoingEmail)
        .where(OutgoingEmail.status == "queued", OutgoingEmail.next_attempt_at <= now)
        .order_by(OutgoingEmail.id)
        .limit(limit)
    ).all()
    if not pending:
        return 0, 0
    sent = failed = 0
    try:
        client = _connect(url)
    except (OSError, smtplib.SMTPException) as exc:
        for message in pending:
            _record_failure(message, f"cannot reach SMTP server: {exc}")
        db.session.commit()
        return 0, len(pending)
    try:
        for message in pending:
            try:
                to_address = message.to_address  # reloaded after each commit
            except ObjectDeletedError:
                db.session.rollback()
                continue  # erased on the recipient's request since this batch was read
            email = EmailMessage()
            email["From"] = sender_address()
            email["To"] = to_address
            email["Subject"] = message.subject
            email["Message-ID"] = make_msgid(domain=urlsplit(current_app.config["HALLES_URL"]).hostname)
            email.set_content(message.body_text)
            try:
                client.send_message(email)
            except (OSError, smtplib.SMTPException) as exc:
                _record_failure(message, str(exc))
                failed += 1
            else:
                message.status = "sent"
                message.sent_at = utcnow()
                message.attempts += 1
                sent += 1
            try:
                db.session.commit()
            except StaleDataError:
                db.session.rollback()  # erased while it was being sent: nothing left to mark
    finally:
        try:
            client.quit()
        except (OSError, smtplib.SMTPException):
            pass
    return sent, failed


def _record_failure(message: OutgoingEmail, error: str) -> None:
    message.attempts += 1
    message.last_error = error[:1000]
    if message.attempts >= MAX_ATTEMPTS:
        message.status = "failed"
    else:
        message.next_attempt_at = utcnow() + _backoff(message.attempts)
