"""Signing in and out, "forgot my password", and accepting an invitation (the links sent by email
point here: /password-reset/<token> and /invitations/<token>)."""

from __future__ import annotations

from flask import flash, redirect, render_template, request, session, url_for
from flask_babel import gettext as _
from flask_login import login_user, logout_user

from node.common.errors import HallesError
from node.common.ratelimit import rate_limited
from node.extensions import db
from node.members import services as members
from node.web import forms
from node.web.blueprint import web
from node.web.helpers import actor, fail, form_errors, is_safe_next


def _home_for(user) -> str:
    if user.role in ("admin", "office_manager"):
        return url_for("web.dashboard")
    return url_for("web.manage")


def _sign_in(user, remember: bool = False) -> None:
    # A fresh session on sign-in, keeping only the language: a session id planted before
    # (session fixation) is worth nothing afterwards.
    lang = session.get("lang")
    session.clear()
    if lang:
        session["lang"] = lang
    login_user(user, remember=remember)


@web.route("/login", methods=["GET", "POST"])
@rate_limited("login", failures_only=True)
def login():
    form = forms.LoginForm()
    if request.method == "GET":
        form.next.data = request.args.get("next", "")
        if actor() is not None:
            return redirect(_home_for(actor()))
    if form.validate_on_submit():
        user = members.authenticate(form.email.data.strip(), form.password.data)
        if user is None:
            flash(_("This email and password do not match an active account. Check them, or choose a new "
                    "password."), "error")
            return render_template("account/login.html", form=form), 401
        _sign_in(user, remember=bool(form.remember.data))
        flash(_("Welcome, %(name)s.", name=user.name or user.email), "success")
        target = form.next.data
        return redirect(target if is_safe_next(target) else _home_for(user))
    if request.method == "POST":
        form_errors(form)
        return render_template("account/login.html", form=form), 422
    return render_template("account/login.html", form=form)


@web.post("/logout")
def logout():
    forms.CancelForm().validate_on_submit()  # the CSRF check runs before the view (CSRFProtect)
    logout_user()
    lang = session.get("lang")
    session.clear()
    if lang:
        session["lang"] = lang
    flash(_("You are signed out."), "success")
    return redirect(url_for("web.index"))


@web.route("/password-reset", methods=["GET", "POST"])
@rate_limited("login")
def password_reset_request():
    form = forms.PasswordResetRequestForm()
    if form.validate_on_submit():
        members.request_password_reset(form.email.data.strip())
        db.session.commit()
        # The same answer whether or not the address has an account.
        return render_template("account/reset_sent.html", email=form.email.data.strip())
    if request.method == "POST":
        form_errors(form)
        return render_template("account/reset_request.html", form=form), 422
    return render_template("account/reset_request.html", form=form)


@web.route("/password-reset/<token>", methods=["GET", "POST"])
def password_reset(token: str):
    members.find_password_reset(token)  # a dead link says so (404/410) before the form is shown
    form = forms.NewPasswordForm()
    if form.validate_on_submit():
        try:
            user = members.reset_password(token, form.password.data)
            db.session.commit()
        except HallesError as exc:
            fail(exc)
            return render_template("account/reset.html", form=form), exc.status
        _sign_in(user)
        flash(_("Your new password is saved."), "success")
        return redirect(_home_for(user))
    if request.method == "POST":
        form_errors(form)
        return render_template("account/reset.html", form=form), 422
    return render_template("account/reset.html", form=form)


@web.route("/invitations/<token>", methods=["GET", "POST"])
def invitation(token: str):
    invitation = members.find_invitation(token)
    form = forms.InvitationForm()
    if form.validate_on_submit():
        try:
            user = members.accept_invitation(token, form.name.data, form.password.data)
            db.session.commit()
        except HallesError as exc:
            fail(exc)
            return render_template("account/invitation.html", form=form, invitation=invitation), exc.status
        _sign_in(user)
        flash(_("Welcome, %(name)s: your account is ready.", name=user.name), "success")
        return redirect(_home_for(user))
    if request.method == "POST":
        form_errors(form)
        return render_template("account/invitation.html", form=form, invitation=invitation), 422
    return render_template("account/invitation.html", form=form, invitation=invitation)
