"""Administration: peers (requests with their charter attestation and the diff of charters; approve,
refuse, block; deliveries given up and received activities that failed, sent or applied again),
charter versions (publish), people and roles (invite, change role, deactivate), and a read-only view
of the node's settings with the environment variable that changes each."""

from __future__ import annotations

from flask import current_app, flash, redirect, render_template, request, url_for
from flask_babel import gettext as _
from flask_babel import ngettext
from sqlalchemy import select

from node import config as config_module
from node.charters import services as charters
from node.common.errors import HallesError, InvalidInput, NotFound
from node.common.permissions import ASSIGNABLE_ROLES
from node.extensions import db
from node.fedi import failures, peering
from node.fedi.models import Follow, RemoteActor
from node.members import services as members
from node.members.models import User
from node.organisations import services as organisations
from node.web import forms, labels
from node.web.blueprint import web
from node.web.helpers import actor, admin_required, fail, form_errors, staff_required

# --- peers ----------------------------------------------------------------------------------------

#: Failed received activities listed on the peers page (``halles inbox failed`` lists more).
FAILED_SHOWN = 10


def _peer_view(actor_id: int):
    for view in peering.list_peers():
        if view.actor.id == actor_id:
            return view
    raise NotFound("this node is not among the peers and followers")


@web.route("/admin/peers", methods=["GET", "POST"])
@admin_required
def admin_peers():
    request_form = forms.PeerRequestForm(prefix="peer")
    block_form = forms.BlockForm(prefix="block")
    status = 200
    if request.method == "POST" and request.form.get("form") == "request":
        if request_form.validate_on_submit():
            try:
                remote = peering.request_peering(request_form.target.data.strip())
                db.session.commit()
            except HallesError as exc:
                fail(exc)
                status = exc.status
            else:
                flash(_("Peering request sent to %(name)s; its admin will answer.", name=remote.name or remote.ap_id),
                      "success")
                return redirect(url_for("web.admin_peers"))
        else:
            form_errors(request_form)
            status = 422
    if request.method == "POST" and request.form.get("form") == "block":
        if block_form.validate_on_submit():
            try:
                purged = peering.block(block_form.domain.data)
                db.session.commit()
            except HallesError as exc:
                fail(exc)
                status = exc.status
            else:
                flash(_("%(domain)s is blocked (%(n)d accounts forgotten).", domain=block_form.domain.data.strip(),
                        n=purged), "success")
                return redirect(url_for("web.admin_peers"))
        else:
            form_errors(block_form)
            status = 422
    if request.method == "POST" and request.form.get("form") == "retry-deliveries":
        queued = failures.retry_given_up_deliveries()
        db.session.commit()
        flash(ngettext("%(num)d delivery will be sent again.", "%(num)d deliveries will be sent again.", queued),
              "success")
        return redirect(url_for("web.admin_peers"))
    if request.method == "POST" and request.form.get("form") == "retry-inbox":
        queued = failures.retry_failed_activities()
        db.session.commit()
        flash(ngettext("%(num)d activity will be applied again.", "%(num)d activities will be applied again.",
                       queued), "success")
        return redirect(url_for("web.admin_peers"))
    views = peering.list_peers()
    requests = [v for v in views if v.incoming is not None and v.incoming.state == "pending" and not v.blocked]
    return render_template("admin/peers.html", requests=requests, peers=[v for v in views if v not in requests],
                           request_form=request_form, block_form=block_form,
                           charter=charters.current_version(), given_up=failures.given_up_deliveries(),
                           failed=failures.failed_activities(FAILED_SHOWN),
                           failed_total=failures.count_failed_activities()), status


@web.get("/admin/peers/<int:actor_id>")
@admin_required
def admin_peer(actor_id: int):
    view = _peer_view(actor_id)
    diff = peering.charter_diff(view.actor.ap_id) if view.incoming is not None else None
    return render_template("admin/peer.html", view=view, diff=diff, charter=charters.current_version())


@web.post("/admin/peers/<int:actor_id>/<decision>")
@admin_required
def admin_peer_decision(actor_id: int, decision: str):
    remote = db.session.get(RemoteActor, actor_id)
    if remote is None:
        raise NotFound("this node is not among the peers and followers")
    try:
        if decision == "approve":
            peering.approve(remote.ap_id)
            message = _("%(name)s is now a peer.", name=remote.name or remote.domain)
        elif decision == "refuse":
            peering.refuse(remote.ap_id)
            message = _("The request of %(name)s is refused.", name=remote.name or remote.domain)
        elif decision == "block":
            peering.block(remote.domain)
            message = _("%(domain)s is blocked.", domain=remote.domain)
        elif decision == "remove":
            peering.remove(remote.ap_id)
            message = _("The relation with %(name)s is ended.", name=remote.name or remote.domain)
        else:
            raise InvalidInput(f"unknown decision {decision!r}")
        db.session.commit()
    except HallesError as exc:
        fail(exc)
    else:
        flash(message, "success")
    return redirect(url_for("web.admin_peers"))


# --- charter versions -----------------------------------------------------------------------------


@web.route("/admin/charter", methods=["GET", "POST"])
@admin_required
def admin_charter():
    form = forms.CharterPublishForm()
    current = charters.current_version()
    status = 200
    if request.method == "GET" and current is not None:
        form.title.data = current.title
        form.body.data = current.body
    if request.method == "POST":
        if form.validate_on_submit():
            try:
                version, must_resign = charters.publish_charter(actor(), form.body.data, form.version.data,
                                                                form.title.data)
                db.session.commit()
            except HallesError as exc:
                fail(exc)
                status = exc.status
            else:
                flash(_("Version %(version)s is published; %(n)d organisations are asked to sign it.",
                        version=version.version, n=len(must_resign)), "success")
                return redirect(url_for("web.admin_charter"))
        else:
            form_errors(form)
            status = 422
    return render_template("admin/charter.html", form=form, current=current, versions=charters.all_versions(),
                           overview=charters.signatures_overview()), status


# --- people ---------------------------------------------------------------------------------------


def _invite_form() -> forms.InviteForm:
    form = forms.InviteForm(prefix="invite")
    assignable = ASSIGNABLE_ROLES.get(actor().role, ())
    form.role.choices = forms.opts((role, str(labels.ROLE_LABELS[role])) for role in assignable)
    form.organisation_id.choices = forms.opts([("", _("None"))] + [
        (str(o.id), o.name) for o in organisations.active_organisations()])
    return form


def _org_id(value: str | None) -> int | None:
    return int(value) if value and value.isdigit() else None


@web.route("/admin/users", methods=["GET", "POST"])
@staff_required
def admin_users():
    form = _invite_form()
    status = 200
    if request.method == "POST":
        if form.validate_on_submit():
            try:
                invitation, _token = members.invite(actor(), form.email.data.strip(), form.role.data,
                                                    _org_id(form.organisation_id.data))
                db.session.commit()
            except HallesError as exc:
                fail(exc)
                status = exc.status
            else:
                flash(_("Invitation sent to %(email)s.", email=invitation.email), "success")
                return redirect(url_for("web.admin_users"))
        else:
            form_errors(form)
            status = 422
    users, _more = members.list_users(actor(), limit=500)
    return render_template(
        "admin/users.html", form=form, users=users, invitations=members.pending_invitations(actor()),
        assignable=ASSIGNABLE_ROLES.get(actor().role, ()), organisations=organisations.active_organisations(),
    ), status


@web.post("/admin/users/<int:user_id>")
@staff_required
def admin_user_update(user_id: int):
    target = members.get_user(user_id)
    values = {"role": request.form.get("role", target.role),
              "organisation_id": _org_id(request.form.get("organisation_id"))}
    try:
        members.update_user(actor(), target, values)
        db.session.commit()
    except HallesError as exc:
        fail(exc)
    else:
        flash(_("%(email)s is now: %(role)s.", email=target.email, role=labels.label(labels.ROLE_LABELS, target.role)),
              "success")
    return redirect(url_for("web.admin_users"))


@web.post("/admin/users/<int:user_id>/deactivate")
@staff_required
def admin_user_deactivate(user_id: int):
    target = members.get_user(user_id)
    try:
        members.deactivate_user(actor(), target)
        db.session.commit()
    except HallesError as exc:
        fail(exc)
    else:
        flash(_("The account of %(email)s is deactivated.", email=target.email), "success")
    return redirect(url_for("web.admin_users"))


# --- settings -------------------------------------------------------------------------------------

#: Values never shown, even to an admin: anyone looking over a shoulder would see them.
SECRET_KEYS = ("SECRET_KEY",)


def _masked(key: str, value) -> str:
    if key in SECRET_KEYS:
        return _("(set, hidden)") if value else _("(not set)")
    text = "" if value is None else str(value)
    if key in ("SQLALCHEMY_DATABASE_URI", "HALLES_SMTP_URL") and "@" in text and "://" in text:
        scheme, rest = text.split("://", 1)
        credentials, host = rest.rsplit("@", 1)
        user = credentials.split(":", 1)[0]
        return f"{scheme}://{user}:***@{host}" if ":" in credentials else f"{scheme}://{user}@{host}"
    return text


@web.get("/admin/settings")
@admin_required
def admin_settings():
    config = current_app.config
    rows = [
        {"env": env, "key": key, "value": _masked(key, config.get(key)), "kind": kind}
        for env, (key, kind) in config_module.ENV_SETTINGS.items()
    ]
    followers = db.session.scalar(select(db.func.count(Follow.id)).where(Follow.state == "accepted")) or 0
    return render_template("admin/settings.html", rows=rows, instance=config.get("HALLES_INSTANCE"),
                           users=db.session.scalar(select(db.func.count(User.id))) or 0, follows=followers)
