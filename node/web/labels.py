"""Human names for the codes the domains store (categories, features, roles...), translated.

The domains keep stable English codes; pages show these labels in the visitor's language."""

from __future__ import annotations

from flask_babel import lazy_gettext as _l

CATEGORY_LABELS = {
    "debate": _l("Debate"),
    "workshop": _l("Workshop"),
    "screening": _l("Screening"),
    "festival": _l("Festival"),
    "open_day": _l("Open day"),
    "meeting": _l("Meeting"),
    "exhibition": _l("Exhibition"),
    "concert": _l("Concert"),
    "training": _l("Training"),
    "other": _l("Other"),
}

ACCESSIBILITY_LABELS = {
    "step_free": _l("Step-free access"),
    "sign_language": _l("Sign language"),
    "hearing_loop": _l("Hearing loop"),
    "easy_to_read": _l("Easy to read"),
    "quiet_room": _l("Quiet room"),
    "audio_description": _l("Audio description"),
    "accessible_toilets": _l("Accessible toilets"),
}

BOOKER_LABELS = {
    "resident_member": _l("Resident member organisation"),
    "member": _l("Member organisation"),
    "ngo": _l("Non-profit organisation"),
    "public_service": _l("Public service"),
    "small_company": _l("Small responsible company"),
    "other": _l("Other"),
}

ROLE_LABELS = {
    "admin": _l("Administrator"),
    "office_manager": _l("Office manager"),
    "org_manager": _l("Organisation manager"),
    "member": _l("Member"),
}

BOOKING_STATUS_LABELS = {
    "pending": _l("Waiting for approval"),
    "approved": _l("Approved"),
    "refused": _l("Refused"),
    "cancelled": _l("Cancelled"),
}

EVENT_STATUS_LABELS = {
    "confirmed": _l("Confirmed"),
    "tentative": _l("To be confirmed"),
    "cancelled": _l("Cancelled"),
}

VISIBILITY_LABELS = {
    "public": _l("Public: everyone, here and on the network"),
    "network": _l("Network: people with an account here and charter peers"),
    "members": _l("Members: people with an account on this node only"),
}

REGISTRATION_STATUS_LABELS = {
    "pending": _l("Waiting for email confirmation"),
    "confirmed": _l("Confirmed"),
    "waitlisted": _l("On the waiting list"),
    "cancelled": _l("Cancelled"),
}

CONSENT_LABELS = {
    "public": _l("Everyone"),
    "network": _l("Network only"),
    "private": _l("Not shared"),
}

DIRECTORY_FIELD_LABELS = {
    "name": _l("Name"),
    "description": _l("Description"),
    "website": _l("Website"),
    "topics": _l("Topics"),
    "contact_email": _l("Contact email"),
    "contact_phone": _l("Contact phone"),
    "city": _l("City"),
}

LANGUAGE_LABELS = {
    "fr": _l("French"),
    "en": _l("English"),
    "de": _l("German"),
    "es": _l("Spanish"),
    "it": _l("Italian"),
    "ar": _l("Arabic"),
    "br": _l("Breton"),
    "oc": _l("Occitan"),
}

MAIL_STATUS_LABELS = {
    "queued": _l("Waiting"),
    "sent": _l("Sent"),
    "failed": _l("Failed"),
}

FOLLOW_STATE_LABELS = {
    "pending": _l("Waiting for an answer"),
    "accepted": _l("Accepted"),
    "rejected": _l("Refused"),
    "removed": _l("Ended"),
}


def label(mapping: dict, code: str | None) -> str:
    """The label of ``code``, or the code itself when it is not one we know (a remote node's value)."""
    if code is None:
        return ""
    return str(mapping.get(code, code))
