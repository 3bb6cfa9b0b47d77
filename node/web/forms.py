"""Flask-WTF forms of the web pages. They check shape (required, lengths, formats) and carry the
CSRF token; the rules (who may, what is allowed) stay in the services the views call."""

from __future__ import annotations

import re
from functools import lru_cache
from zoneinfo import available_timezones

from flask_babel import lazy_gettext as _l
from flask_wtf import FlaskForm
from wtforms import (
    BooleanField,
    DateField,
    EmailField,
    HiddenField,
    IntegerField,
    PasswordField,
    RadioField,
    SelectField,
    SelectMultipleField,
    StringField,
    TextAreaField,
    TimeField,
    URLField,
)
from wtforms.fields.choices import SelectChoice
from wtforms.validators import URL, DataRequired, EqualTo, InputRequired, Length, NumberRange, Optional, ValidationError

from node.events.models import ACCESSIBILITY_FEATURES, CATEGORIES
from node.organisations.models import CONSENT_SCOPES, DIRECTORY_FIELDS
from node.web import labels

EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
MIN_PASSWORD = 10


def opts(pairs) -> list[SelectChoice]:
    """(value, label) pairs as the option objects WTForms wants (tuples are deprecated)."""
    return [SelectChoice(value, label) for value, label in pairs]


def email_address(form, field) -> None:
    """A light check (the services check again): something@somewhere.tld."""
    if field.data and not EMAIL.match(field.data.strip()):
        raise ValidationError(_l("Enter an email address such as name@example.org."))


class MultiCheckboxField(SelectMultipleField):
    """A group of checkboxes (rendered by the template as a fieldset)."""

    def pre_validate(self, form) -> None:
        values = {str(choice.value) for choice in self.choices or []}
        for item in self.data or []:
            if str(item) not in values:
                raise ValidationError(_l("Choose among the options shown."))


# --- account ----------------------------------------------------------------------------------------


class LoginForm(FlaskForm):
    email = EmailField(_l("Email"), validators=[DataRequired(), Length(max=254), email_address])
    password = PasswordField(_l("Password"), validators=[DataRequired(), Length(max=1024)])
    remember = BooleanField(_l("Keep me signed in on this device"))
    next = HiddenField()


class PasswordResetRequestForm(FlaskForm):
    email = EmailField(_l("Email"), validators=[DataRequired(), Length(max=254), email_address])


class NewPasswordForm(FlaskForm):
    password = PasswordField(
        _l("New password"),
        validators=[DataRequired(), Length(min=MIN_PASSWORD, max=1024,
                                           message=_l("At least %(min)d characters.", min=MIN_PASSWORD))],
    )
    confirm = PasswordField(
        _l("Repeat the password"),
        validators=[DataRequired(), EqualTo("password", message=_l("The two passwords are different."))],
    )


class InvitationForm(NewPasswordForm):
    name = StringField(_l("Your name"), validators=[DataRequired(), Length(max=200)])


# --- citizens -----------------------------------------------------------------------------------------


class RegistrationForm(FlaskForm):
    name = StringField(_l("Your name"), validators=[DataRequired(), Length(max=200)])
    email = EmailField(_l("Your email"), validators=[DataRequired(), Length(max=254), email_address])
    occurrence = SelectField(_l("Date"), validators=[Optional()], validate_choice=False)


class GuestBookingForm(FlaskForm):
    name = StringField(_l("Your name"), validators=[DataRequired(), Length(max=200)])
    email = EmailField(_l("Your email"), validators=[DataRequired(), Length(max=254), email_address])
    organisation_name = StringField(_l("Organisation (if any)"), validators=[Optional(), Length(max=200)])
    category = SelectField(_l("You are"), validators=[DataRequired()])
    day = DateField(_l("Day"), validators=[InputRequired()])
    start = TimeField(_l("From"), validators=[InputRequired()])
    end = TimeField(_l("To"), validators=[InputRequired()])
    purpose = TextAreaField(_l("What is it for?"), validators=[DataRequired(), Length(max=2000)])


# --- members -------------------------------------------------------------------------------------------


class OrganisationForm(FlaskForm):
    name = StringField(_l("Name"), validators=[DataRequired(), Length(max=200)])
    description = TextAreaField(_l("Description"), validators=[Optional(), Length(max=5000)])
    website = URLField(_l("Website"), validators=[Optional(), Length(max=500), URL(message=_l("Enter a full address "
                                                                                            "such as https://..."))])
    topics = StringField(_l("Topics"), validators=[Optional(), Length(max=500)],
                         description=_l("Separated by commas, e.g. democracy, youth, commons"))
    contact_email = EmailField(_l("Contact email"), validators=[Optional(), Length(max=254), email_address])
    contact_phone = StringField(_l("Contact phone"), validators=[Optional(), Length(max=40)])
    city = StringField(_l("City"), validators=[Optional(), Length(max=120)],
                       description=_l("Leave empty if you work in the place itself"))
    resident = BooleanField(_l("Resident organisation (works in the place, resident tariff)"))


def consent_form_class():
    """One radio group per directory field: who may see it."""

    class ConsentForm(FlaskForm):
        pass

    for field in DIRECTORY_FIELDS:
        setattr(
            ConsentForm,
            field,
            RadioField(labels.DIRECTORY_FIELD_LABELS[field],
                       choices=opts((scope, labels.CONSENT_LABELS[scope]) for scope in CONSENT_SCOPES),
                       validators=[InputRequired()]),
        )
    return ConsentForm


class CharterSignForm(FlaskForm):
    sha256 = HiddenField(validators=[DataRequired(), Length(min=64, max=64)])
    read = BooleanField(_l("I have read this charter and sign it on behalf of my organisation"),
                        validators=[DataRequired(message=_l("Tick the box to confirm you read the charter."))])


RECURRENCE_CHOICES = [
    ("none", _l("Only once")),
    ("weekly", _l("Every week")),
    ("monthly_day", _l("Every month, on the same date")),
    ("monthly_weekday", _l("Every month, on the same weekday (e.g. 2nd Thursday)")),
]
RECURRENCE_END_CHOICES = [
    ("count", _l("After a number of times")),
    ("until", _l("On a date")),
]


#: Metropolitan France, then the French overseas zones, at the top of the time zone menu.
PARIS = "Europe/Paris"
OVERSEAS_ZONES = {
    "America/Guadeloupe": _l("Guadeloupe"),
    "America/Martinique": _l("Martinique"),
    "America/Cayenne": _l("French Guiana"),
    "Indian/Reunion": _l("Réunion"),
    "Indian/Mayotte": _l("Mayotte"),
    "Pacific/Noumea": _l("New Caledonia"),
    "Pacific/Tahiti": _l("French Polynesia (Tahiti)"),
    "America/Miquelon": _l("Saint Pierre and Miquelon"),
}
#: The continents and oceans of the IANA database; the other names (US/Eastern, Etc/GMT+3, CET,
#: Factory...) are aliases or technical zones that would only lengthen the menu.
ZONE_REGIONS = ("Africa", "America", "Antarctica", "Arctic", "Asia", "Atlantic", "Australia", "Europe", "Indian",
                "Pacific")


@lru_cache(maxsize=1)
def listed_zones() -> tuple[str, ...]:
    return tuple(sorted(name for name in available_timezones()
                        if name.split("/", 1)[0] in ZONE_REGIONS and "/" in name) + ["UTC"])


def _zone_label(name: str) -> str:
    return name.replace("_", " ")


def timezone_choices(node_zone: str, current: str | None = None) -> list[SelectChoice]:
    """The time zone menu: Paris, the node's own zone and the French overseas zones first, then every
    zone of the IANA database. ``current`` (an event's zone) is kept even when it is not listed."""
    first_group = str(_l("France and this place"))
    other_group = str(_l("All time zones"))
    metropolitan = _l("Metropolitan France")
    this_place = _l("this place")
    top: list[SelectChoice] = [SelectChoice(PARIS, f"{_zone_label(PARIS)} — {metropolitan}", optgroup=first_group)]
    if node_zone != PARIS:
        place = OVERSEAS_ZONES.get(node_zone)
        note = f"{place}, {this_place}" if place else str(this_place)
        top.append(SelectChoice(node_zone, f"{_zone_label(node_zone)} — {note}", optgroup=first_group))
    top += [SelectChoice(name, f"{_zone_label(name)} — {label}", optgroup=first_group)
            for name, label in OVERSEAS_ZONES.items() if name != node_zone]
    shown = {choice.value for choice in top}
    rest = [name for name in listed_zones() if name not in shown]
    if current and current not in shown and current not in rest:
        rest.insert(0, current)
    return top + [SelectChoice(name, _zone_label(name), optgroup=other_group) for name in rest]


class EventForm(FlaskForm):
    title = StringField(_l("Title"), validators=[DataRequired(), Length(max=300)])
    description = TextAreaField(_l("Description"), validators=[Optional(), Length(max=50_000)])
    category = SelectField(_l("Category"), choices=opts((c, labels.CATEGORY_LABELS[c]) for c in CATEGORIES))
    tags = StringField(_l("Keywords"), validators=[Optional(), Length(max=500)],
                       description=_l("Separated by commas"))
    language = SelectField(_l("Language"), choices=opts(labels.LANGUAGE_LABELS.items()))
    day = DateField(_l("Date"), validators=[InputRequired()])
    start = TimeField(_l("Starts at"), validators=[InputRequired()])
    end = TimeField(_l("Ends at"), validators=[InputRequired()])
    timezone = SelectField(_l("Time zone"), validators=[DataRequired()],
                           invalid_choice_message=_l("Choose a time zone from the list (for example Europe/Paris)."))
    recurrence = RadioField(_l("Repeats"), choices=opts(RECURRENCE_CHOICES), default="none")
    interval = IntegerField(_l("Every how many weeks or months"), default=1,
                            validators=[Optional(), NumberRange(min=1, max=12)])
    recurrence_end = RadioField(_l("Ends"), choices=opts(RECURRENCE_END_CHOICES), default="count")
    count = IntegerField(_l("Number of times"), default=4, validators=[Optional(), NumberRange(min=1, max=500)])
    until = DateField(_l("Last date"), validators=[Optional()])
    location_kind = RadioField(_l("Kind of place"), default="room", choices=opts([
        ("room", _l("In one of our rooms")), ("place", _l("Somewhere else")), ("online", _l("Online"))]))
    room_id = SelectField(_l("Room"), coerce=str, validate_choice=False)
    place_name = StringField(_l("Place name"), validators=[Optional(), Length(max=200)])
    address = StringField(_l("Address"), validators=[Optional(), Length(max=300)])
    postal_code = StringField(_l("Postal code"), validators=[Optional(), Length(max=20)])
    city = StringField(_l("City"), validators=[Optional(), Length(max=120)])
    online_url = URLField(_l("Online link"), validators=[Optional(), URL(), Length(max=500)])
    accessibility = MultiCheckboxField(
        _l("Accessibility"), choices=opts((f, labels.ACCESSIBILITY_LABELS[f]) for f in ACCESSIBILITY_FEATURES))
    capacity = IntegerField(_l("Places"), validators=[Optional(), NumberRange(min=1, max=1_000_000)],
                            description=_l("Leave empty for no limit"))
    price = StringField(_l("Price in euros"), validators=[Optional(), Length(max=12)],
                        description=_l("0 or empty: free"))
    visibility = RadioField(_l("Who can see it"), default="public",
                            choices=opts((v, labels.VISIBILITY_LABELS[v]) for v in ("public", "network", "members")))
    status = SelectField(_l("Status"), default="confirmed",
                         choices=opts([("confirmed", labels.EVENT_STATUS_LABELS["confirmed"]),
                                       ("tentative", labels.EVENT_STATUS_LABELS["tentative"])]))
    organiser_ids = MultiCheckboxField(_l("Organised by"), coerce=int)


class MemberBookingForm(FlaskForm):
    room_id = SelectField(_l("Room"), coerce=int, validate_choice=False)
    category = SelectField(_l("Tariff"))
    day = DateField(_l("Day"), validators=[InputRequired()])
    start = TimeField(_l("From"), validators=[InputRequired()])
    end = TimeField(_l("To"), validators=[InputRequired()])
    purpose = TextAreaField(_l("What is it for?"), validators=[Optional(), Length(max=2000)])


class CancelForm(FlaskForm):
    """Only the CSRF token: a button that changes something."""


class ConfirmForm(FlaskForm):
    """The confirmation step of a change that cannot be undone (cancel, delete): the CSRF token and
    where to go back to."""

    next = HiddenField()


class BookingCancelForm(ConfirmForm):
    message = TextAreaField(_l("Message to the person who booked (optional)"),
                            validators=[Optional(), Length(max=2000)],
                            description=_l("Sent with the cancellation email, e.g. the reason or another date."))


# --- office and admin ------------------------------------------------------------------------------------


class CharterPublishForm(FlaskForm):
    version = StringField(_l("Version number"), validators=[DataRequired(), Length(max=40)],
                          description=_l("e.g. 1.1 or 2026-03"))
    title = StringField(_l("Title"), validators=[DataRequired(), Length(max=200)])
    body = TextAreaField(_l("Text"), validators=[DataRequired(), Length(max=200_000)],
                         description=_l("Variables such as {{ place_name }} and {{ city }} are replaced"))


class InviteForm(FlaskForm):
    email = EmailField(_l("Email"), validators=[DataRequired(), Length(max=254), email_address])
    role = SelectField(_l("Role"))
    organisation_id = SelectField(_l("Organisation"), coerce=str, validate_choice=False)


class NewOrganisationForm(FlaskForm):
    name = StringField(_l("Name"), validators=[DataRequired(), Length(max=200)])
    description = TextAreaField(_l("Description"), validators=[Optional(), Length(max=5000)])
    resident = BooleanField(_l("Resident organisation"))


class PeerRequestForm(FlaskForm):
    target = StringField(_l("Address of the other node"), validators=[DataRequired(), Length(max=500)],
                         description=_l("e.g. https://fabrique-commune.example"))


class BlockForm(FlaskForm):
    domain = StringField(_l("Domain"), validators=[DataRequired(), Length(max=255)])
