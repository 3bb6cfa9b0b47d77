"""Pages for citizens, no account needed: home, agenda of the whole network, event pages with
registration, map, subscriptions and the embeddable widget, places and rooms with the booking
request form, the directory of member organisations, the charter."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

from flask import Response, current_app, flash, make_response, redirect, render_template, request, url_for
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from sqlalchemy import select

from node.charters import services as charters
from node.common.errors import HallesError, NotFound
from node.common.permissions import directory_scope, event_visibilities, is_staff, manages
from node.common.ratelimit import TooManyRequests, client_address, rate_limited
from node.common.timeutil import utcnow
from node.events import registrations
from node.events import services as events
from node.events.models import ACCESSIBILITY_FEATURES, CATEGORIES, Event, EventOccurrence, event_organisers
from node.extensions import db
from node.fedi.models import Follow, RemoteActor, RemoteOrganisation
from node.organisations import services as organisations
from node.organisations.models import Organisation
from node.spaces import services as spaces
from node.spaces.models import MEMBER_CATEGORIES
from node.web import forms, labels
from node.web.blueprint import web
from node.web.cards import by_day, cards_from_rows, make_card, remote_actors
from node.web.filters import EventFilters
from node.web.helpers import (
    actor,
    event_time,
    fail,
    form_errors,
    local_midnight,
    local_to_utc,
    node_zone,
    price_label,
    query_string,
    today_local,
    web_url,
    week_start,
)
from node.web.text import markdown

PAGE_SIZE = 30
MAP_LIMIT = 100
EMBED_DEFAULT = 5
EMBED_MAX = 20


# --- home -----------------------------------------------------------------------------------------


@web.get("/")
def index():
    now = utcnow()
    week = now + timedelta(days=7)
    here, _next = events.list_occurrences(actor(), scope="local", start=now, end=week, limit=6)
    network, _next = events.list_occurrences(actor(), scope="network", start=now, end=now + timedelta(days=14),
                                             limit=100)
    elsewhere = [row for row in network if row.event.is_remote][:6]
    return render_template(
        "public/index.html",
        here=cards_from_rows(here),
        elsewhere=cards_from_rows(elsewhere),
        sites=spaces.list_sites(),
        charter=charters.current_version(),
        peers=_peer_nodes(),
    )


def _peer_nodes() -> list[RemoteActor]:
    """The third-places this node exchanges with (accepted follows either way, Halles nodes)."""
    ids = select(Follow.actor_id).where(Follow.state == "accepted")
    return list(db.session.scalars(
        select(RemoteActor).where(RemoteActor.id.in_(ids), RemoteActor.is_halles_node.is_(True))
        .order_by(RemoteActor.city, RemoteActor.name)
    ))


# --- agenda ---------------------------------------------------------------------------------------


def _choices(user: Any) -> dict[str, list[str]]:
    """Cities and languages of the events a visitor can find, for the filter menus."""
    query = (
        select(Event.city, Event.language)
        .join(EventOccurrence, EventOccurrence.event_id == Event.id)
        .where(Event.visibility.in_(event_visibilities(user)), EventOccurrence.ends_at > utcnow())
        .distinct()
    )
    rows = db.session.execute(query).all()
    cities = sorted({city for city, _lang in rows if city}, key=str.casefold)
    languages = sorted({lang for _city, lang in rows if lang})
    return {"cities": cities, "languages": languages}


def _listing(filters: EventFilters, *, limit: int, cursor: str | None = None):
    try:
        rows, next_cursor = events.list_occurrences(
            actor(), cursor=cursor, limit=limit, **filters.service_kwargs(utcnow()))
    except HallesError as exc:
        if cursor:  # a stale or mangled "more" link: start the list again
            flash(exc.detail, "error")
            rows, next_cursor = events.list_occurrences(actor(), limit=limit, **filters.service_kwargs(utcnow()))
        else:
            raise
    return cards_from_rows(rows), next_cursor


@web.get("/events")
def events_list():
    filters = EventFilters.from_args(request.args)
    cards, next_cursor = _listing(filters, limit=PAGE_SIZE, cursor=request.args.get("cursor") or None)
    return render_template(
        "public/events.html",
        filters=filters,
        groups=by_day(cards),
        count=len(cards),
        next_cursor=next_cursor,
        choices=_choices(actor()),
        categories=CATEGORIES,
        features=ACCESSIBILITY_FEATURES,
        feed_query=filters.calendar_query(),
        page_query=filters.page_query(),
        scope_urls={
            scope: url_for("web.events_list") + "?" + query_string({**filters.page_params(),
                                                                    "scope": None if scope == "network" else scope})
            for scope in ("network", "local")
        },
    )


# --- one event ------------------------------------------------------------------------------------


def _event_or_404(event_uuid: str) -> Event:
    if len(event_uuid) > 64:
        raise NotFound("no such event")
    return events.get_event(actor(), event_uuid)


def _registration_form(event: Event, upcoming: list[Any]) -> forms.RegistrationForm:
    form = forms.RegistrationForm()
    form.occurrence.choices = forms.opts(
        (
            row.occurrence.starts_at.replace(tzinfo=UTC).isoformat(),
            event_time(event, row.occurrence.starts_at)
            + ("" if row.remaining is None else " — " + _("%(n)d places left", n=row.remaining)),
        )
        for row in upcoming
    )
    return form


def _render_event(event: Event, form: forms.RegistrationForm | None = None, status: int = 200):
    now = utcnow()
    rows = events.occurrence_rows(event)
    upcoming = [row for row in rows if row.occurrence.ends_at > now]
    actors = remote_actors([event])
    shown = upcoming[0] if upcoming else (rows[-1] if rows else None)
    card = make_card(event, shown.occurrence.starts_at if shown else event.starts_at,
                     shown.occurrence.ends_at if shown else event.ends_at,
                     shown.remaining if shown else None, actors)
    can_register = (not event.is_remote and event.status != "cancelled"
                    and any(row.occurrence.starts_at > now for row in upcoming))
    open_rows = [row for row in upcoming if row.occurrence.starts_at > now]
    if form is None and can_register:
        form = _registration_form(event, open_rows)
    organisers = [(org, organisations.is_listed(org, directory_scope(actor(), org.id))) for org in event.organisers]
    remote_link = None
    if event.is_remote:
        remote_link = web_url(event.registration_url) or web_url(_remote_page(event)) or None
    share_url = _public_url(event)
    user = actor()
    if event.is_remote:
        can_manage = is_staff(user)
    else:
        can_manage = any(manages(user, org.id) for org in event.organisers) or is_staff(user)
    return render_template(
        "public/event.html",
        event=event,
        card=card,
        upcoming=upcoming[:12],
        more_dates=max(0, len(upcoming) - 12),
        form=form,
        can_register=can_register,
        organisers=organisers,
        remote_link=remote_link,
        share_url=share_url,
        is_over=not upcoming,
        can_manage=can_manage,
    ), status


def _remote_page(event: Event) -> str:
    url = (event.remote_object or {}).get("url")
    if isinstance(url, str) and url.startswith(("https://", "http://")):
        return url
    return event.ap_id


def _public_url(event: Event) -> str:
    """The address to share: the origin's page for a remote event (when it is a web address), ours
    otherwise."""
    if event.is_remote and web_url(_remote_page(event)):
        return web_url(_remote_page(event))
    return f"{current_app.config['HALLES_URL']}{url_for('web.event', event_uuid=event.uuid)}"


@web.get("/events/<event_uuid>")
def event(event_uuid: str):
    return _render_event(_event_or_404(event_uuid))


@web.post("/events/<event_uuid>/register")
@rate_limited("registrations")
def event_register(event_uuid: str):
    event = _event_or_404(event_uuid)
    now = utcnow()
    open_rows = [row for row in events.occurrence_rows(event) if row.occurrence.starts_at > now]
    form = _registration_form(event, open_rows)
    if not form.validate_on_submit():
        form_errors(form)
        return _render_event(event, form, 422)
    occurrence = None
    if form.occurrence.data:
        try:
            occurrence = datetime.fromisoformat(form.occurrence.data)
        except ValueError:
            form.occurrence.errors = [_("Choose one of the dates shown.")]
            return _render_event(event, form, 422)
    try:
        registration, _secret = registrations.register(
            event, name=form.name.data, email=form.email.data.strip(), occurrence=occurrence)
        db.session.commit()
    except HallesError as exc:
        fail(exc)
        return _render_event(event, form, exc.status)
    flash(_("Almost done: we sent an email to %(email)s. Open the link in it to confirm your place.",
            email=registration.email), "success")
    return redirect(url_for("web.event", event_uuid=event.uuid) + "#registration")


# --- map ------------------------------------------------------------------------------------------


@web.get("/map")
def map_page():
    filters = EventFilters.from_args(request.args)
    cards, _next = _listing(filters, limit=MAP_LIMIT)
    sites = spaces.list_sites()
    # One marker per spot: events in our own rooms sit on the site's marker (a pin on a pin could not
    # be clicked), and several events at one address share a marker listing them.
    points: dict[tuple[float, float], dict[str, Any]] = {}
    for site in sites:
        if site.latitude is not None and site.longitude is not None:
            points[(round(site.latitude, 5), round(site.longitude, 5))] = {
                "kind": "place", "lat": site.latitude, "lon": site.longitude, "title": site.name,
                "detail": f"{site.address}, {site.postal_code} {site.city}".strip(", "),
                "url": url_for("web.places") + f"#site-{site.id}", "events": []}
    seen: set[str] = set()
    for card in cards:
        event = card.event
        if event.latitude is None or event.longitude is None or event.uuid in seen:
            continue
        seen.add(event.uuid)
        key = (round(event.latitude, 5), round(event.longitude, 5))
        point = points.setdefault(key, {
            "kind": "event", "lat": event.latitude, "lon": event.longitude, "title": "",
            "detail": f"{card.place}, {card.city}", "url": "", "events": []})
        point["events"].append({"title": event.title, "url": card.url, "when": event_time(event, card.starts_at)})
    for point in points.values():
        if point["kind"] == "event":
            first = point["events"][0]
            point["title"] = first["title"] if len(point["events"]) == 1 else _("%(n)d events", n=len(point["events"]))
            point["url"] = first["url"]
    return render_template(
        "public/map.html",
        filters=filters,
        cards=cards,
        sites=sites,
        points_json=json.dumps(list(points.values()), ensure_ascii=False).replace("</", "<\\/"),
        tile_url=current_app.config.get("HALLES_TILE_URL") or "",
        page_query=filters.page_query(),
        feed_query=filters.calendar_query(),
    )


# --- subscribe and embed --------------------------------------------------------------------------


@web.get("/subscribe")
def subscribe():
    filters = EventFilters.from_args(request.args)
    base = current_app.config["HALLES_URL"]
    calendar_query = filters.calendar_query()
    suffix = f"?{calendar_query}" if calendar_query else ""
    widget_query = filters.widget_query()
    ics = f"{base}/events.ics{suffix}"
    return render_template(
        "public/subscribe.html",
        filters=filters,
        ics_url=ics,
        webcal_url="webcal://" + ics.split("://", 1)[1],
        atom_url=f"{base}/events.atom{suffix}",
        embed_url=f"{base}/embed" + (f"?{widget_query}" if widget_query else ""),
        script_url=f"{base}/embed.js",
        feed_query=widget_query,
        page_query=filters.page_query(),
        period=PERIOD_LABELS.get(filters.when),
    )


@web.get("/embed")
def embed():
    """A small list that partners show in an iframe; links open on this node in a new tab."""
    filters = EventFilters.from_args(request.args)
    try:
        limit = max(1, min(EMBED_MAX, int(request.args.get("limit", EMBED_DEFAULT))))
    except ValueError:
        limit = EMBED_DEFAULT
    # The widget is public by nature: it shows what anyone may see, whoever's browser loads it.
    rows, _next = events.list_occurrences(None, limit=limit, public_only=True, **filters.service_kwargs(utcnow()))
    return render_template("public/embed.html", cards=cards_from_rows(rows), filters=filters,
                           page_query=filters.page_query())


PERIOD_LABELS = {"today": _l("Today"), "weekend": _l("This weekend"), "week": _l("Next 7 days"),
                 "month": _l("This month")}


EMBED_SCRIPT = """(function () {
  "use strict";
  var script = document.currentScript;
  var origin = new URL(script.src).origin;
  function mount(el) {
    if (el.getAttribute("data-halles-mounted")) { return; }
    el.setAttribute("data-halles-mounted", "1");
    var query = (el.getAttribute("data-halles-events") || "").replace(/^\\?/, "");
    var frame = document.createElement("iframe");
    frame.src = origin + "/embed" + (query ? "?" + query : "");
    frame.title = el.getAttribute("data-title") || "%(title)s";
    frame.loading = "lazy";
    frame.style.width = "100%%";
    frame.style.border = "0";
    frame.style.minHeight = "320px";
    el.appendChild(frame);
    window.addEventListener("message", function (event) {
      if (event.origin === origin && event.source === frame.contentWindow && event.data
          && typeof event.data.hallesHeight === "number") {
        frame.style.height = Math.min(4000, Math.max(120, event.data.hallesHeight)) + "px";
      }
    });
  }
  var nodes = document.querySelectorAll("[data-halles-events]");
  for (var i = 0; i < nodes.length; i++) { mount(nodes[i]); }
})();
"""


@web.get("/embed.js")
def embed_script():
    title = current_app.config["HALLES_NAME"].replace("\\", "").replace('"', "'")
    body = EMBED_SCRIPT % {"title": title}
    response = Response(body, mimetype="text/javascript")
    response.headers["Cache-Control"] = "public, max-age=3600"
    response.headers["Access-Control-Allow-Origin"] = "*"
    return response


# --- places and rooms -----------------------------------------------------------------------------


@web.get("/places")
def places():
    sites = spaces.list_sites()
    rooms = spaces.list_rooms()
    by_site: dict[int, list[Any]] = {}
    for room in rooms:
        by_site.setdefault(room.site_id, []).append(room)
    return render_template("public/places.html", sites=sites, rooms_by_site=by_site)


def _week_from_args() -> Any:
    raw = request.args.get("week")
    today = today_local()
    try:
        chosen = datetime.strptime(raw, "%Y-%m-%d").date() if raw else today
    except ValueError:
        chosen = today
    return week_start(chosen)


def _room_week(room_id: int, monday) -> list[dict[str, Any]]:
    """Seven days with their taken slots (never who booked), for the availability strip."""
    tz = node_zone()
    start = local_midnight(monday, tz)
    end = local_midnight(monday + timedelta(days=7), tz)
    availability = spaces.room_availability(room_id, start, end)
    days = []
    for offset in range(7):
        day = monday + timedelta(days=offset)
        day_start, day_end = local_midnight(day, tz), local_midnight(day + timedelta(days=1), tz)
        slots = []
        for busy in availability["busy"]:
            if busy["starts_at"] < day_end and busy["ends_at"] > day_start:
                slots.append({"start": max(busy["starts_at"], day_start), "end": min(busy["ends_at"], day_end),
                              "status": busy["status"]})
        days.append({"date": day, "start": day_start, "slots": slots})
    return days


def _guest_categories(room) -> list[Any]:
    return forms.opts((code, str(labels.BOOKER_LABELS[code])) for code in (room.tariffs or {})
                      if code not in MEMBER_CATEGORIES and code in labels.BOOKER_LABELS)


def _render_room(room, form=None, status: int = 200):
    monday = _week_from_args()
    if form is None:
        form = forms.GuestBookingForm()
        form.category.choices = _guest_categories(room)
    return render_template(
        "public/room.html",
        room=room,
        site=room.site,
        week=_room_week(room.id, monday),
        monday=monday,
        previous_week=(monday - timedelta(days=7)).isoformat(),
        next_week=(monday + timedelta(days=7)).isoformat(),
        this_week=week_start(today_local()),
        form=form,
    ), status


@web.get("/rooms/<int:room_id>")
def room(room_id: int):
    room = spaces.get_room(room_id)
    if not room.active:
        raise NotFound(f"room {room_id} is no longer offered")
    return _render_room(room)


@web.post("/rooms/<int:room_id>")
def room_request(room_id: int):
    room = spaces.get_room(room_id)
    if not room.active:
        raise NotFound(f"room {room_id} is no longer offered")
    form = forms.GuestBookingForm()
    form.category.choices = _guest_categories(room)
    try:
        # Before validation, like the API: a refused or invalid request counts too (no free probing).
        spaces.limit_guest_requests(client_address())
    except TooManyRequests as exc:
        retry_after = int(exc.headers["Retry-After"])
        minutes = max(1, -(-retry_after // 60))
        flash(_("Too many booking requests from your connection: please try again in %(minutes)d minutes, or "
                "write to the team.", minutes=minutes), "error")
        response = make_response(_render_room(room, form, 429))
        response.headers["Retry-After"] = str(retry_after)
        return response
    if not form.validate_on_submit():
        form_errors(form)
        return _render_room(room, form, 422)
    tz = node_zone()
    starts_at = local_to_utc(form.day.data, form.start.data, tz)
    ends_at = local_to_utc(form.day.data, form.end.data, tz)
    if ends_at <= starts_at:
        form.end.errors = [_("The end must be after the start.")]
        return _render_room(room, form, 422)
    try:
        booking = spaces.request_booking_as_guest(
            room.id, starts_at, ends_at, name=form.name.data, email=form.email.data.strip(),
            organisation_name=form.organisation_name.data or "", category=form.category.data,
            purpose=form.purpose.data,
        )
        db.session.commit()
    except HallesError as exc:
        fail(exc)
        return _render_room(room, form, exc.status)
    flash(_("Thank you: your request #%(id)d is sent (estimated price %(price)s). The team will answer by email "
            "at %(email)s.", id=booking.id, price=price_label(booking.price_cents), email=booking.requester_email),
          "success")
    return redirect(url_for("web.room", room_id=room.id))


# --- directory ------------------------------------------------------------------------------------


@web.get("/directory")
def directory():
    user = actor()
    page, _more = organisations.list_organisations(user, limit=1000)
    local = [organisations.directory_entry(org, directory_scope(user, org.id)) for org in page]
    local.sort(key=lambda entry: (entry.get("name") or "").casefold())
    remote_groups: list[tuple[RemoteActor, list[RemoteOrganisation]]] = []
    if user is not None:
        # What peers send us is their *network* projection: people with an account here may read it,
        # anonymous visitors may not (it can hold fields shared with the network only).
        rows = db.session.scalars(
            select(RemoteOrganisation).join(RemoteActor, RemoteOrganisation.origin_actor_id == RemoteActor.id)
            .order_by(RemoteActor.city, RemoteActor.name, RemoteOrganisation.name)
        ).all()
        grouped: dict[int, list[RemoteOrganisation]] = {}
        for row in rows:
            grouped.setdefault(row.origin_actor_id, []).append(row)
        remote_groups = [(items[0].origin, items) for items in grouped.values()]
    return render_template("public/directory.html", local=local, remote_groups=remote_groups,
                           peers=_peer_nodes())


@web.get("/organisations/<slug>")
def organisation(slug: str):
    user = actor()
    org = db.session.scalar(select(Organisation).where(Organisation.slug == slug[:80]))
    if org is None or org.deleted_at is not None or not organisations.is_listed(org, directory_scope(user, org.id)):
        raise NotFound("there is no member organisation at this address")
    entry = organisations.directory_entry(org, directory_scope(user, org.id))
    now = utcnow()
    query = (
        select(EventOccurrence, Event)
        .join(Event, EventOccurrence.event_id == Event.id)
        .join(event_organisers, event_organisers.c.event_id == Event.id)
        .where(event_organisers.c.organisation_id == org.id, Event.visibility.in_(event_visibilities(user)),
               EventOccurrence.ends_at > now)
        .order_by(EventOccurrence.starts_at, EventOccurrence.id)
        .limit(8)
    )
    found = db.session.execute(query).all()
    cards = [make_card(ev, occ.starts_at, occ.ends_at, registrations.remaining_places(ev, occ.starts_at), {})
             for occ, ev in found]
    return render_template("public/organisation.html", entry=entry, cards=cards)


# --- charter --------------------------------------------------------------------------------------


@web.get("/charter")
def charter():
    version = charters.current_version()
    return render_template(
        "public/charter.html",
        version=version,
        body=markdown(version.body) if version else None,
        versions=charters.all_versions(),
    )
