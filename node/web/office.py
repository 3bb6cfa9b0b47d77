"""The office manager's dashboard: booking requests to decide in one click, the week's room
occupancy, organisations that must sign the charter, coming events with their registrations,
email waiting to be sent, and the health of the federation; plus the member organisations list."""

from __future__ import annotations

from datetime import datetime, timedelta

from flask import flash, redirect, render_template, request, url_for
from flask_babel import format_date
from flask_babel import gettext as _
from sqlalchemy import func, select

from node.charters import services as charters
from node.common.errors import HallesError
from node.common.timeutil import utcnow
from node.events import registrations
from node.events import services as events
from node.extensions import db
from node.fedi import peering
from node.fedi.models import Delivery, InboxItem
from node.mail.models import OutgoingEmail
from node.organisations import services as organisations
from node.spaces import services as spaces
from node.web import forms
from node.web.blueprint import web
from node.web.helpers import actor, fail, form_errors, pattern, staff_required, today_local, week_start
from node.web.occupancy import REFERENCE_HOURS_PER_DAY, week_occupancy

#: The confirmed bookings the dashboard lists (each can be cancelled from there).
APPROVED_SPAN = timedelta(days=60)
APPROVED_SHOWN = 30


def _week_arg():
    raw = request.args.get("week")
    try:
        chosen = datetime.strptime(raw, "%Y-%m-%d").date() if raw else today_local()
    except ValueError:
        chosen = today_local()
    return week_start(chosen)


def _mail_summary() -> dict:
    counts = dict(db.session.execute(
        select(OutgoingEmail.status, func.count(OutgoingEmail.id)).group_by(OutgoingEmail.status)).all())
    waiting = db.session.scalars(
        select(OutgoingEmail).where(OutgoingEmail.status.in_(("queued", "failed")))
        .order_by(OutgoingEmail.status.desc(), OutgoingEmail.next_attempt_at, OutgoingEmail.id).limit(10)
    ).all()
    return {"queued": counts.get("queued", 0), "failed": counts.get("failed", 0), "sent": counts.get("sent", 0),
            "waiting": waiting}


def _federation_summary() -> dict:
    peers = peering.list_peers()
    counts = dict(db.session.execute(
        select(Delivery.state, func.count(Delivery.id)).group_by(Delivery.state)).all())
    retrying = db.session.scalar(
        select(func.count(Delivery.id)).where(Delivery.state == "pending", Delivery.attempts > 0)) or 0
    failures = db.session.scalars(
        select(Delivery).where((Delivery.state == "dead") | ((Delivery.state == "pending") & (Delivery.attempts > 0)))
        .order_by(Delivery.next_attempt_at.desc(), Delivery.id.desc()).limit(8)
    ).all()
    inbox_failed = db.session.scalar(select(func.count(InboxItem.id)).where(InboxItem.state == "failed")) or 0
    return {
        "peers": peers,
        "accepted": sum(1 for p in peers if "accepted" in (p.incoming and p.incoming.state,
                                                           p.outgoing and p.outgoing.state)),
        "requests": sum(1 for p in peers if p.incoming is not None and p.incoming.state == "pending"),
        "pending": counts.get("pending", 0),
        "retrying": retrying,
        "dead": counts.get("dead", 0),
        "sent": counts.get("sent", 0),
        "failures": failures,
        "inbox_failed": inbox_failed,
    }


@web.get("/office")
@staff_required
def dashboard():
    user = actor()
    pending, _cursor = spaces.list_bookings(user, status="pending", limit=50)
    monday = _week_arg()
    now = utcnow()
    approved, _cursor = spaces.list_bookings(user, status="approved", start=now, end=now + APPROVED_SPAN,
                                             limit=APPROVED_SHOWN)
    rows, _next = events.list_occurrences(user, scope="local", start=now, end=now + timedelta(days=30), limit=12)
    taken = registrations.places_taken_map({(row.event.id, row.occurrence.starts_at) for row in rows})
    return render_template(
        "office/dashboard.html",
        pending=pending,
        approved=approved,
        approved_days=APPROVED_SPAN.days,
        occupancy=week_occupancy(user, monday),
        reference_hours=REFERENCE_HOURS_PER_DAY,
        monday=monday,
        week_label=format_date(monday, pattern("day_year")),
        day_names=[format_date(monday + timedelta(days=i), "EEE").rstrip(".") for i in range(7)],
        previous_week=(monday - timedelta(days=7)).isoformat(),
        next_week=(monday + timedelta(days=7)).isoformat(),
        this_week=week_start(today_local()),
        to_sign=charters.organisations_to_sign(),
        charter=charters.current_version(),
        coming=rows,
        taken=taken,
        mail=_mail_summary(),
        federation=_federation_summary(),
    )


@web.post("/office/bookings/<int:booking_id>/<decision>")
@staff_required
def booking_decision(booking_id: int, decision: str):
    message = (request.form.get("message") or "").strip()[:2000]
    try:
        if decision == "approve":
            booking = spaces.approve_booking(actor(), booking_id, message)
        elif decision == "refuse":
            booking = spaces.refuse_booking(actor(), booking_id, message)
        elif decision == "cancel":
            booking = spaces.cancel_booking(actor(), booking_id, message)
        else:
            return redirect(url_for("web.dashboard"))
        db.session.commit()
    except HallesError as exc:
        fail(exc)
    else:
        done = {"approve": _("Booking #%(id)d approved; %(name)s is told by email."),
                "refuse": _("Booking #%(id)d refused; %(name)s is told by email."),
                "cancel": _("Booking #%(id)d cancelled.")}[decision]
        flash(done % {"id": booking.id, "name": booking.requester_name}, "success")
    return redirect(url_for("web.dashboard") + "#requests")


@web.route("/office/organisations", methods=["GET", "POST"])
@staff_required
def office_organisations():
    form = forms.NewOrganisationForm()
    status = 200
    if request.method == "POST":
        if form.validate_on_submit():
            try:
                org = organisations.create_organisation(actor(), {
                    "name": form.name.data.strip(), "description": (form.description.data or "").strip(),
                    "resident": bool(form.resident.data)})
                db.session.commit()
            except HallesError as exc:
                fail(exc)
                status = exc.status
            else:
                flash(_("%(name)s is added. Invite its manager from the people page.", name=org.name), "success")
                return redirect(url_for("web.organisation_edit", org_id=org.id))
        else:
            form_errors(form)
            status = 422
    signed = charters.signed_current_ids()
    return render_template("office/organisations.html", orgs=organisations.active_organisations(), signed=signed,
                           form=form, charter=charters.current_version()), status
