"""The members' space: an organisation manager edits the organisation and what it shares, signs the
charter, publishes and manages events (with recurrence), sees and exports registrations, and
requests room bookings. Staff reach every organisation from here too."""

from __future__ import annotations

from datetime import datetime, time, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any

from flask import Response, abort, flash, redirect, render_template, request, url_for
from flask_babel import gettext as _
from flask_login import login_required
from sqlalchemy import func, select

from node.charters import services as charters
from node.common.errors import Forbidden, HallesError
from node.common.permissions import is_staff, require_event_manager, require_manager_of, require_staff
from node.common.timeutil import utcnow
from node.events import registrations
from node.events import services as events
from node.events.models import Event, EventOccurrence, Registration, event_organisers
from node.extensions import db
from node.organisations import services as organisations
from node.organisations.models import DIRECTORY_FIELDS, Organisation
from node.spaces import services as spaces
from node.spaces.models import BLOCKING_STATUSES, BOOKER_CATEGORIES, MEMBER_CATEGORIES
from node.web import forms, labels
from node.web.blueprint import web
from node.web.helpers import (
    actor,
    event_zone,
    fail,
    form_errors,
    in_zone,
    is_safe_next,
    local_to_utc,
    node_zone,
)
from node.web.recurrence import Recurrence, build_rule, read_rule
from node.web.text import markdown

# --- overview -------------------------------------------------------------------------------------


def _managed_organisations(user) -> list[Organisation]:
    if is_staff(user):
        return organisations.active_organisations()
    if user.role == "org_manager" and user.organisation_id is not None:
        org = db.session.get(Organisation, user.organisation_id)
        return [org] if org is not None and org.deleted_at is None else []
    return []


def _registration_counts(event_ids: list[int]) -> dict[int, dict[str, int]]:
    counts: dict[int, dict[str, int]] = {}
    if not event_ids:
        return counts
    rows = db.session.execute(
        select(Registration.event_id, Registration.status, func.count(Registration.id))
        .where(Registration.event_id.in_(event_ids))
        .group_by(Registration.event_id, Registration.status)
    ).all()
    for event_id, status, count in rows:
        counts.setdefault(event_id, {})[status] = count
    return counts


def _manageable_events(user, *, limit: int = 200) -> list[Event]:
    """Local events this person may change: all for staff, their organisation's for a manager."""
    query = select(Event).where(Event.origin_actor_id.is_(None))
    if not is_staff(user):
        if user.organisation_id is None or user.role != "org_manager":
            return []
        query = query.join(event_organisers, event_organisers.c.event_id == Event.id).where(
            event_organisers.c.organisation_id == user.organisation_id)
    return list(db.session.scalars(query.order_by(Event.starts_at.desc(), Event.id.desc()).limit(limit)))


def _next_occurrences(event_ids: list[int]) -> dict[int, datetime]:
    if not event_ids:
        return {}
    rows = db.session.execute(
        select(EventOccurrence.event_id, func.min(EventOccurrence.starts_at))
        .where(EventOccurrence.event_id.in_(event_ids), EventOccurrence.ends_at > utcnow())
        .group_by(EventOccurrence.event_id)
    ).all()
    return dict(rows)


@web.get("/manage")
@login_required
def manage():
    user = actor()
    orgs = _managed_organisations(user)
    signed = charters.signed_current_ids()
    own_events = _manageable_events(user, limit=50)
    upcoming = _next_occurrences([e.id for e in own_events])
    coming = sorted((e for e in own_events if e.id in upcoming), key=lambda e: upcoming[e.id])[:8]
    bookings: list[Any] = []
    if user.role == "org_manager" or is_staff(user):
        try:
            bookings, _cursor = spaces.list_bookings(user, start=utcnow(), limit=8,
                                                     organisation_id=None if is_staff(user) else user.organisation_id)
        except HallesError:
            bookings = []
    return render_template(
        "manage/index.html",
        orgs=orgs,
        signed=signed,
        charter=charters.current_version(),
        coming=coming,
        upcoming=upcoming,
        counts=_registration_counts([e.id for e in coming]),
        bookings=bookings,
    )


# --- organisation ---------------------------------------------------------------------------------


def _organisation_for(org_id: int, action: str) -> Organisation:
    org = organisations.get_organisation(org_id)
    require_manager_of(actor(), org.id, action)
    return org


def _consent_form(org: Organisation, formdata=None):
    form_class = forms.consent_form_class()
    form = form_class(formdata=formdata, prefix="consent")
    if formdata is None:
        for field, scope in organisations.consent_of(org).items():
            getattr(form, field).data = scope
    return form


def _organisation_form(org: Organisation, formdata=None) -> forms.OrganisationForm:
    form = forms.OrganisationForm(formdata=formdata, prefix="org")
    if formdata is None:
        form.name.data = org.name
        form.description.data = org.description
        form.website.data = org.website
        form.topics.data = ", ".join(org.topics or [])
        form.contact_email.data = org.contact_email
        form.contact_phone.data = org.contact_phone
        form.city.data = org.city
        form.resident.data = org.resident
    return form


def _render_organisation(org, form=None, consent=None, status: int = 200):
    return render_template(
        "manage/organisation.html",
        org=org,
        form=form or _organisation_form(org),
        consent=consent or _consent_form(org),
        fields=DIRECTORY_FIELDS,
        staff=is_staff(actor()),
        preview_public=organisations.directory_entry(org, "public"),
        preview_network=organisations.directory_entry(org, "network"),
    ), status


@web.get("/manage/organisations/<int:org_id>")
@login_required
def organisation_edit(org_id: int):
    return _render_organisation(_organisation_for(org_id, "change this organisation"))


@web.post("/manage/organisations/<int:org_id>")
@login_required
def organisation_save(org_id: int):
    org = _organisation_for(org_id, "change this organisation")
    form = _organisation_form(org, request.form)
    if not form.validate():
        form_errors(form)
        return _render_organisation(org, form=form, status=422)
    values: dict[str, Any] = {
        "name": form.name.data.strip(),
        "description": (form.description.data or "").strip(),
        "website": (form.website.data or "").strip() or None,
        "topics": [t.strip() for t in (form.topics.data or "").split(",") if t.strip()][:30],
        "contact_email": (form.contact_email.data or "").strip() or None,
        "contact_phone": (form.contact_phone.data or "").strip() or None,
        "city": (form.city.data or "").strip() or None,
    }
    if is_staff(actor()):
        values["resident"] = bool(form.resident.data)
    try:
        organisations.update_organisation(actor(), org, values)
        db.session.commit()
    except HallesError as exc:
        fail(exc)
        return _render_organisation(org, form=form, status=exc.status)
    flash(_("The organisation's details are saved."), "success")
    return redirect(url_for("web.organisation_edit", org_id=org.id))


@web.post("/manage/organisations/<int:org_id>/consent")
@login_required
def organisation_consent(org_id: int):
    org = _organisation_for(org_id, "change what this organisation shares")
    consent = _consent_form(org, request.form)
    if not consent.validate():
        form_errors(consent)
        return _render_organisation(org, consent=consent, status=422)
    choices = {field: getattr(consent, field).data for field in DIRECTORY_FIELDS}
    try:
        organisations.set_consent(actor(), org, choices)
        db.session.commit()
    except HallesError as exc:
        fail(exc)
        return _render_organisation(org, consent=consent, status=exc.status)
    flash(_("Your sharing choices are saved."), "success")
    return redirect(url_for("web.organisation_edit", org_id=org.id) + "#consent")


# --- charter --------------------------------------------------------------------------------------


@web.route("/manage/organisations/<int:org_id>/charter", methods=["GET", "POST"])
@login_required
def charter_sign(org_id: int):
    org = _organisation_for(org_id, "sign the charter for this organisation")
    version = charters.current_version()
    form = forms.CharterSignForm()
    status = 200
    if version is not None and request.method == "GET":
        form.sha256.data = version.sha256
    if request.method == "POST":
        if form.validate_on_submit():
            try:
                _signature, created = charters.sign_current(actor(), org.id, form.sha256.data)
                db.session.commit()
            except HallesError as exc:
                fail(exc)
                status = exc.status
            else:
                flash(_("Thank you: %(org)s signed version %(version)s of the charter.", org=org.name,
                        version=version.version) if created else _("This version was already signed."), "success")
                return redirect(url_for("web.manage"))
        else:
            form_errors(form)
            status = 422
    signature = charters.find_signature(org.id, version.id) if version is not None else None
    return render_template(
        "manage/charter.html", org=org, version=version, form=form, signature=signature,
        body=markdown(version.body) if version else None,
    ), status


# --- events ---------------------------------------------------------------------------------------


@web.get("/manage/events")
@login_required
def manage_events():
    user = actor()
    items = _manageable_events(user)
    upcoming = _next_occurrences([e.id for e in items])
    return render_template(
        "manage/events.html",
        coming=sorted((e for e in items if e.id in upcoming), key=lambda e: upcoming[e.id]),
        past=[e for e in items if e.id not in upcoming][:30],
        upcoming=upcoming,
        counts=_registration_counts([e.id for e in items]),
        can_publish=user.role in ("admin", "office_manager", "org_manager"),
    )


def _event_form(formdata=None, event: Event | None = None) -> forms.EventForm:
    user = actor()
    form = forms.EventForm(formdata=formdata)
    form.timezone.choices = forms.timezone_choices(node_zone().key, event.timezone if event is not None else None)
    rooms = spaces.list_rooms()
    form.room_id.choices = forms.opts([("", _("Choose a room"))] + [
        (str(r.id), f"{r.name} — {r.site.name} ({_('%(n)d people', n=r.capacity)})") for r in rooms])
    signed = charters.signed_current_ids()
    if is_staff(user):
        candidates = organisations.active_organisations()
    else:
        candidates = [o for o in _managed_organisations(user)]
    form.organiser_ids.choices = forms.opts(
        (o.id, o.name + ("" if o.id in signed else " — " + _("charter not signed"))) for o in candidates)
    if event is not None and event.rrule and read_rule(event.rrule, in_zone(event.starts_at, event_zone(event))
                                                       .date(), event_zone(event)) is None:
        form.recurrence.choices = [*forms.opts([("keep", _("Keep the current rule (%(rule)s)", rule=event.rrule))]),
                                   *form.recurrence.choices]
    if formdata is None:
        if event is None:
            form.timezone.data = node_zone().key
            form.language.data = "fr"
            if user.organisation_id is not None:
                form.organiser_ids.data = [user.organisation_id]
            elif len(candidates) == 1:
                form.organiser_ids.data = [candidates[0].id]
            if not rooms:
                form.location_kind.data = "place"
        else:
            _fill_from_event(form, event)
    return form


def _fill_from_event(form: forms.EventForm, event: Event) -> None:
    tz = event_zone(event)
    start, end = in_zone(event.starts_at, tz), in_zone(event.ends_at, tz)
    form.title.data = event.title
    form.description.data = event.description
    form.category.data = event.category
    form.tags.data = ", ".join(event.tags or [])
    form.language.data = event.language
    form.day.data = start.date()
    form.start.data = start.time().replace(second=0, microsecond=0)
    form.end.data = end.time().replace(second=0, microsecond=0)
    form.timezone.data = event.timezone
    recurrence = read_rule(event.rrule, start.date(), tz)
    if recurrence is None:
        form.recurrence.data = "keep"
    else:
        form.recurrence.data = recurrence.kind
        form.interval.data = recurrence.interval
        form.recurrence_end.data = recurrence.end
        form.count.data = recurrence.count
        form.until.data = recurrence.until
    form.location_kind.data = event.location_kind
    form.room_id.data = str(event.room_id) if event.room_id else ""
    form.place_name.data = event.place_name
    form.address.data = event.address
    form.postal_code.data = event.postal_code
    form.city.data = event.city
    form.online_url.data = event.online_url
    form.accessibility.data = [k for k, v in (event.accessibility or {}).items() if v]
    form.capacity.data = event.capacity
    form.price.data = "" if not event.price_cents else str(Decimal(event.price_cents) / 100)
    form.visibility.data = event.visibility
    form.status.data = event.status if event.status != "cancelled" else "confirmed"
    form.organiser_ids.data = [o.id for o in event.organisers]


def _price_cents(text: str | None) -> int:
    raw = (text or "").strip().replace(",", ".").replace("€", "").strip()
    if not raw:
        return 0
    try:
        value = Decimal(raw)
    except InvalidOperation:
        raise ValueError(_("Write the price as a number of euros, e.g. 5 or 7.50.")) from None
    if value < 0 or value > 1_000_000:
        raise ValueError(_("Write the price as a number of euros, e.g. 5 or 7.50."))
    return int((value * 100).to_integral_value())


def _event_data(form: forms.EventForm, event: Event | None) -> dict[str, Any]:
    """The form -> the dict ``events.services.create_event`` / ``update_event`` read. Times are local
    (naive) with their ``timezone``, which is how the service reads them."""
    start = datetime.combine(form.day.data, form.start.data or time(0))
    end = datetime.combine(form.day.data, form.end.data or time(0))
    if end <= start:
        end += timedelta(days=1)  # 22:00 -> 01:00 ends the next morning
    data: dict[str, Any] = {
        "title": form.title.data.strip(),
        "description": (form.description.data or "").strip(),
        "category": form.category.data,
        "tags": [t.strip().lstrip("#") for t in (form.tags.data or "").split(",") if t.strip()][:20],
        "language": form.language.data,
        "timezone": form.timezone.data.strip(),
        "starts_at": start,
        "ends_at": end,
        "location_kind": form.location_kind.data,
        "accessibility": {feature: True for feature in form.accessibility.data or []},
        "capacity": form.capacity.data or None,
        "price_cents": _price_cents(form.price.data),
        "visibility": form.visibility.data,
        "organiser_ids": list(form.organiser_ids.data or []),
    }
    if event is not None:
        data["status"] = form.status.data
    if form.recurrence.data != "keep":
        recurrence = Recurrence(kind=form.recurrence.data, interval=form.interval.data or 1,
                                end=form.recurrence_end.data, count=form.count.data, until=form.until.data)
        if recurrence.kind != "none" and recurrence.end == "until" and recurrence.until is None:
            raise ValueError(_("Give the last date of the series, or choose a number of times."))
        data["rrule"] = build_rule(recurrence, form.day.data)
        if event is not None and data["rrule"] != event.rrule:
            data["exdates"] = []
    if form.location_kind.data == "room":
        data["room_id"] = int(form.room_id.data) if (form.room_id.data or "").isdigit() else None
    elif form.location_kind.data == "place":
        for key in ("place_name", "address", "postal_code", "city"):
            data[key] = (getattr(form, key).data or "").strip()
    if form.location_kind.data == "online" or form.online_url.data:
        data["online_url"] = (form.online_url.data or "").strip() or None
    if not data["organiser_ids"] and event is None and not is_staff(actor()):
        data.pop("organiser_ids")
    return data


def _save_event(form: forms.EventForm, event: Event | None) -> tuple[Event | None, int]:
    """(the saved event, 200), or (None, the HTTP status of the refusal) with the reason flashed."""
    try:
        data = _event_data(form, event)
    except ValueError as exc:
        flash(str(exc), "error")
        return None, 422
    try:
        if event is None:
            saved = events.create_event(actor(), data)
        else:
            saved = events.update_event(actor(), event, data)
        db.session.commit()
    except HallesError as exc:
        fail(exc)
        return None, exc.status
    return saved, 200


@web.route("/manage/events/new", methods=["GET", "POST"])
@login_required
def event_new():
    user = actor()
    if user.role not in ("admin", "office_manager", "org_manager"):
        raise Forbidden(_("Only an organisation manager or the office manager can publish events."))
    form = _event_form(request.form if request.method == "POST" else None)
    if request.method == "POST":
        status = 422
        if form.validate_on_submit():
            saved, status = _save_event(form, None)
            if saved is not None:
                flash(_("Your event is published."), "success")
                return redirect(url_for("web.event", event_uuid=saved.uuid))
        else:
            form_errors(form)
        return render_template("manage/event_form.html", form=form, event=None), status
    return render_template("manage/event_form.html", form=form, event=None)


def _local_event(event_uuid: str, action: str) -> Event:
    event = events.get_event(actor(), event_uuid)
    if event.is_remote:
        abort(404)
    require_event_manager(actor(), [o.id for o in event.organisers], action)
    return event


@web.route("/manage/events/<event_uuid>/edit", methods=["GET", "POST"])
@login_required
def event_edit(event_uuid: str):
    event = _local_event(event_uuid, "change this event")
    form = _event_form(request.form if request.method == "POST" else None, event)
    if request.method == "POST":
        status = 422
        if form.validate_on_submit():
            saved, status = _save_event(form, event)
            if saved is not None:
                flash(_("The event is updated."), "success")
                return redirect(url_for("web.event", event_uuid=saved.uuid))
            event = _local_event(event_uuid, "change this event")
        else:
            form_errors(form)
        return render_template("manage/event_form.html", form=form, event=event), status
    return render_template("manage/event_form.html", form=form, event=event)


def _coming_registrations(event: Event) -> int:
    """How many people registered for a date still to come (they get an email if the event goes)."""
    if event.is_remote:
        return 0
    return len(registrations.active_registrations(event, after=utcnow()))


def _back_to_events(default: str | None = None) -> str:
    target = request.values.get("next")
    return target if is_safe_next(target) else default or url_for("web.manage_events")


@web.route("/manage/events/<event_uuid>/cancel", methods=["GET", "POST"])
@login_required
def event_cancel(event_uuid: str):
    """Cancel: the event keeps its page, marked cancelled; registration closes, people registered are
    told, its room bookings are released. A confirmation page first (works without JavaScript)."""
    event = _local_event(event_uuid, "cancel this event")
    form = forms.ConfirmForm()
    if request.method == "POST":
        if not form.validate_on_submit():  # only the CSRF token can be wrong, and CSRFProtect says so first
            return redirect(url_for("web.event_cancel", event_uuid=event.uuid))
        try:
            events.cancel_event(actor(), event)
            db.session.commit()
        except HallesError as exc:
            fail(exc)
        else:
            flash(_("The event is cancelled; the people registered are told by email."), "success")
        return redirect(_back_to_events())
    form.next.data = _back_to_events()
    return render_template("manage/event_confirm.html", event=event, form=form, action="cancel",
                           coming=_coming_registrations(event), back=form.next.data)


def _deletable_event(event_uuid: str) -> Event:
    """A local event for its organisers' managers and staff; an event of another node for staff only
    (moderation: it leaves this node). The same rule as ``events.delete_event``, checked before the
    confirmation page is shown."""
    user = actor()
    event = events.get_event(user, event_uuid)
    if event.is_remote:
        require_staff(user, "remove an event that comes from another node")
    else:
        require_event_manager(user, [o.id for o in event.organisers], "delete this event")
    return event


@web.route("/manage/events/<event_uuid>/delete", methods=["GET", "POST"])
@login_required
def event_delete(event_uuid: str):
    """Delete: the event leaves every list, feed and peer, and its page answers 410. A confirmation
    page first, which offers to cancel instead (works without JavaScript)."""
    event = _deletable_event(event_uuid)
    form = forms.ConfirmForm()
    if request.method == "POST":
        if not form.validate_on_submit():
            return redirect(url_for("web.event_delete", event_uuid=event.uuid))
        title = event.title
        try:
            events.delete_event(actor(), event)
            db.session.commit()
        except HallesError as exc:
            fail(exc)
            return redirect(url_for("web.event_delete", event_uuid=event_uuid))
        flash(_("“%(title)s” is deleted.", title=title), "success")
        target = request.values.get("next")
        # Never back to the page of the event just deleted.
        if not is_safe_next(target) or event_uuid in target:
            target = url_for("web.events_list") if event.is_remote else url_for("web.manage_events")
        return redirect(target)
    # Staff reach an event of another node from its page, not from the list of our events.
    form.next.data = _back_to_events(url_for("web.event", event_uuid=event.uuid) if event.is_remote else None)
    return render_template("manage/event_confirm.html", event=event, form=form, action="delete",
                           coming=_coming_registrations(event), back=form.next.data)


@web.get("/manage/events/<event_uuid>/registrations")
@login_required
def event_registrations(event_uuid: str):
    event = _local_event(event_uuid, "see who registered")
    rows = registrations.list_registrations(actor(), event)
    by_occurrence: dict[datetime, list[Registration]] = {}
    for row in rows:
        by_occurrence.setdefault(row.occurrence_starts_at, []).append(row)
    summary = []
    for start, items in sorted(by_occurrence.items()):
        active = [r for r in items if r.status in ("confirmed", "pending")]
        summary.append({"start": start, "items": items, "active": len(active),
                        "waitlisted": sum(1 for r in items if r.status == "waitlisted"),
                        "remaining": registrations.remaining_places(event, start)})
    return render_template("manage/registrations.html", event=event, summary=summary, total=len(rows))


@web.get("/manage/events/<event_uuid>/registrations.csv")
@login_required
def event_registrations_csv(event_uuid: str):
    event = _local_event(event_uuid, "see who registered")
    body = registrations.registrations_csv(actor(), event)
    response = Response(body, mimetype="text/csv")
    response.headers["Content-Disposition"] = f'attachment; filename="registrations-{event.uuid}.csv"'
    response.headers["Cache-Control"] = "no-store"
    return response


# --- bookings -------------------------------------------------------------------------------------


def _booking_form(formdata=None) -> forms.MemberBookingForm:
    user = actor()
    form = forms.MemberBookingForm(formdata=formdata)
    form.room_id.choices = forms.opts((r.id, f"{r.name} — {r.site.name}") for r in spaces.list_rooms())
    org = user.organisation if user.organisation_id else None
    categories = [c for c in BOOKER_CATEGORIES if c not in MEMBER_CATEGORIES]
    if org is not None:
        categories = (["resident_member"] if org.resident else []) + ["member"] + categories
    form.category.choices = forms.opts((c, str(labels.BOOKER_LABELS[c])) for c in categories)
    return form


@web.route("/manage/bookings", methods=["GET", "POST"])
@login_required
def manage_bookings():
    user = actor()
    if not (is_staff(user) or (user.role == "org_manager" and user.organisation_id)):
        raise Forbidden(_("Only an organisation manager or the office manager can book rooms."))
    form = _booking_form(request.form if request.method == "POST" else None)
    status = 200
    if request.method == "POST":
        if form.validate_on_submit():
            tz = node_zone()
            starts_at = local_to_utc(form.day.data, form.start.data, tz)
            ends_at = local_to_utc(form.day.data, form.end.data, tz)
            try:
                booking = spaces.book_room(
                    user, form.room_id.data, starts_at, ends_at, organisation_id=user.organisation_id,
                    category=form.category.data, purpose=(form.purpose.data or "").strip(),
                )
                db.session.commit()
            except HallesError as exc:
                fail(exc)
                status = exc.status
            else:
                message = (_("Booking #%(id)d is confirmed.", id=booking.id) if booking.status == "approved"
                           else _("Booking request #%(id)d is sent; the office manager will answer.", id=booking.id))
                flash(message, "success")
                return redirect(url_for("web.manage_bookings"))
        else:
            form_errors(form)
            status = 422
    rows, _cursor = spaces.list_bookings(
        user, start=utcnow() - timedelta(days=1), limit=100,
        organisation_id=None if is_staff(user) else user.organisation_id)
    return render_template("manage/bookings.html", form=form, bookings=rows), status


def _cancellable_booking(booking_id: int):
    """The booking if this person may cancel it: staff, or the manager of the booking's organisation
    (the rule of ``spaces.cancel_booking``, checked before the confirmation page is shown)."""
    user = actor()
    booking = spaces.get_booking(user, booking_id)
    require_manager_of(user, booking.organisation_id, "cancel this booking")
    return booking


def _back_from_booking() -> str:
    target = request.values.get("next")
    if is_safe_next(target):
        return target
    return url_for("web.dashboard") + "#approved" if is_staff(actor()) else url_for("web.manage_bookings")


@web.route("/manage/bookings/<int:booking_id>/cancel", methods=["GET", "POST"])
@login_required
def booking_cancel(booking_id: int):
    """A confirmation page, then the cancellation: the slot is free again and the person who booked is
    told by email (with the optional message). Works without JavaScript."""
    booking = _cancellable_booking(booking_id)
    form = forms.BookingCancelForm()
    back = _back_from_booking()
    status = 200
    if request.method == "POST":
        if form.validate_on_submit():
            try:
                spaces.cancel_booking(actor(), booking.id, (form.message.data or "").strip())
                db.session.commit()
            except HallesError as exc:
                fail(exc)
                return redirect(back)
            told = booking.created_by_id != actor().id
            flash(_("Booking #%(id)d is cancelled: the slot is free again.", id=booking.id)
                  + (" " + _("%(name)s is told by email.", name=booking.requester_name) if told else ""), "success")
            return redirect(back)
        form_errors(form)
        status = 422
    form.next.data = back
    return render_template("manage/booking_cancel.html", booking=booking, form=form, back=back,
                           cancellable=booking.status in BLOCKING_STATUSES), status
