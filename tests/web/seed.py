"""A realistic third-place for the web tests, the browser tests and the screenshots, built through the
domains' services (the same rules as people's clicks): people with passwords, a site with rooms, member
organisations that signed the charter (and one that did not), public / network / members events with
accessibility and recurrence, booking requests, registrations and queued email."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from functools import lru_cache
from typing import Any
from zoneinfo import ZoneInfo

from flask import Flask

PASSWORD = "correct horse battery staple"


@lru_cache(maxsize=1)
def password_hash() -> str:
    """scrypt is slow on purpose; the seeded people share one hash of PASSWORD (computed once)."""
    from werkzeug.security import generate_password_hash

    return generate_password_hash(PASSWORD)


@dataclass
class Seeded:
    admin_email: str = "admin@halles.test"
    office_email: str = "accueil@halles.test"
    manager_email: str = "manager@halles.test"
    unsigned_manager_email: str = "nouvelle@halles.test"
    member_email: str = "membre@halles.test"
    password: str = PASSWORD
    org_ids: dict[str, int] = field(default_factory=dict)
    room_ids: list[int] = field(default_factory=list)
    site_id: int = 0
    events: dict[str, str] = field(default_factory=dict)  # title key -> uuid
    booking_ids: list[int] = field(default_factory=list)
    today: date = field(default_factory=date.today)


def _at(day: date, hour: int, minute: int = 0, tz: str = "Europe/Paris") -> datetime:
    return datetime.combine(day, time(hour, minute), tzinfo=ZoneInfo(tz))


def seed(app: Flask, *, today: date | None = None, with_charter: bool = True) -> Seeded:
    from node.charters import services as charters
    from node.events import registrations
    from node.events import services as events
    from node.extensions import db
    from node.members import services as members
    from node.organisations import services as organisations
    from node.spaces import services as spaces

    data = Seeded()
    today = today or datetime.now(ZoneInfo(app.config["HALLES_TIMEZONE"])).date()
    data.today = today
    with app.app_context():
        if with_charter and charters.current_version() is None:
            charters.publish_default_charter(app)
        admin = members.create_user(None, data.admin_email, "admin", name="Camille Admin")
        admin.password_hash = password_hash()
        office = members.create_user(None, data.office_email, "office_manager", name="Sam Accueil")
        office.password_hash = password_hash()

        site = spaces.create_site(admin, {
            "name": "Les Halles Civiques — Belleville", "address": "24 rue de Belleville", "postal_code": "75020",
            "city": "Paris", "latitude": 48.8722, "longitude": 2.3789,
            "opening_hours": "Du lundi au vendredi 9h–19h, samedi 10h–18h",
            "accessibility": "Entrée de plain-pied, ascenseur, toilettes accessibles. Métro Belleville (2, 11).",
        })
        data.site_id = site.id
        tariffs_big = {"resident_member": 0, "member": 1500, "ngo": 2500, "public_service": 4000,
                       "small_company": 6000, "other": 8000}
        tariffs_small = {"resident_member": 0, "member": 800, "ngo": 1200, "public_service": 2000,
                         "small_company": 3000, "other": 4000}
        big = spaces.create_room(admin, {"site_id": site.id, "name": "Grande salle Olympe de Gouges", "capacity": 80,
                                         "step_free": True, "tariffs": tariffs_big,
                                         "amenities": ["vidéoprojecteur", "sonorisation", "boucle magnétique"]})
        small = spaces.create_room(admin, {"site_id": site.id, "name": "Salle Jean Jaurès", "capacity": 25,
                                           "step_free": True, "tariffs": tariffs_small,
                                           "amenities": ["écran", "paperboard", "visioconférence"]})
        data.room_ids = [big.id, small.id]

        specs = [
            ("Démocratie Ouverte", True, "Réseau d'innovation démocratique : conventions citoyennes, budgets "
             "participatifs.", ["démocratie", "participation"]),
            ("Fabrique des Communs", True, "Accompagne les collectifs d'habitants qui gèrent des biens communs.",
             ["communs", "habitat"]),
            ("Jeunes Reporters de Belleville", False, "Ateliers d'éducation aux médias avec les jeunes du quartier.",
             ["jeunesse", "médias"]),
        ]
        current = charters.current_version()
        for name, resident, description, topics in specs:
            org = organisations.create_organisation(admin, {
                "name": name, "resident": resident, "description": description, "topics": topics,
                "website": f"https://{organisations.slugify(name)}.example", "contact_email":
                f"contact@{organisations.slugify(name)}.example", "contact_phone": "01 23 45 67 89"})
            organisations.set_consent(admin, org, {"contact_email": "network", "contact_phone": "private"})
            if current is not None:
                charters.sign_current(admin, org.id, current.sha256)
            data.org_ids[name] = org.id
        newcomer = organisations.create_organisation(admin, {
            "name": "Collectif Nouvelles Voix", "description": "Nouveau membre : podcasts citoyens.",
            "topics": ["podcast"]})
        data.org_ids["Collectif Nouvelles Voix"] = newcomer.id

        manager = members.create_user(None, data.manager_email, "org_manager",
                                      data.org_ids["Démocratie Ouverte"], name="Awa Diallo")
        manager.password_hash = password_hash()
        newbie = members.create_user(None, data.unsigned_manager_email, "org_manager", newcomer.id,
                                     name="Léo Martin")
        newbie.password_hash = password_hash()
        member = members.create_user(None, data.member_email, "member", data.org_ids["Fabrique des Communs"],
                                     name="Inès Membre")
        member.password_hash = password_hash()
        db.session.commit()

        def make(key: str, **values: Any) -> None:
            event = events.create_event(admin, values)
            db.session.commit()
            data.events[key] = event.uuid

        d = today
        make("debate", title="Débat : le tirage au sort peut-il sauver la démocratie locale ?",
             description="Trois élus et deux citoyens tirés au sort racontent leurs expériences.\n\n"
                         "Entrée libre, inscription conseillée.",
             starts_at=_at(d + timedelta(days=2), 19), ends_at=_at(d + timedelta(days=2), 21),
             timezone="Europe/Paris", category="debate", tags=["démocratie"], language="fr",
             accessibility={"step_free": True, "hearing_loop": True, "sign_language": True}, capacity=70,
             visibility="public", location_kind="room", room_id=big.id,
             organiser_ids=[data.org_ids["Démocratie Ouverte"]])
        make("workshop", title="Atelier : budget participatif, mode d'emploi",
             description="Chaque semaine, préparez un projet pour le budget participatif de la Ville.",
             starts_at=_at(d + timedelta(days=3), 18), ends_at=_at(d + timedelta(days=3), 19, 30),
             timezone="Europe/Paris", rrule="FREQ=WEEKLY;COUNT=6", category="workshop", language="fr",
             accessibility={"step_free": True}, capacity=2, visibility="public", location_kind="room",
             room_id=small.id, organiser_ids=[data.org_ids["Démocratie Ouverte"]])
        make("screening", title="Projection : « Les jeunes filment leur quartier »",
             description="Courts métrages réalisés pendant l'atelier d'été, suivis d'un échange.",
             starts_at=_at(d + timedelta(days=9), 18), ends_at=_at(d + timedelta(days=9), 20),
             timezone="Europe/Paris", category="screening", language="fr", price_cents=300,
             accessibility={"easy_to_read": True}, capacity=None, visibility="public", location_kind="place",
             place_name="Cinéma de quartier", address="12 rue de Ménilmontant", postal_code="75020", city="Paris",
             latitude=48.8665, longitude=2.3849, organiser_ids=[data.org_ids["Jeunes Reporters de Belleville"]])
        make("network_only", title="Rencontre des tiers-lieux du réseau",
             description="Réservé aux membres du réseau.",
             starts_at=_at(d + timedelta(days=4), 10), ends_at=_at(d + timedelta(days=4), 12),
             timezone="Europe/Paris", category="meeting", visibility="network", location_kind="online",
             online_url="https://visio.example/reseau", organiser_ids=[data.org_ids["Fabrique des Communs"]])
        make("members_only", title="Assemblée des membres (réservée)",
             description="Ordre du jour confidentiel.",
             starts_at=_at(d + timedelta(days=5), 18), ends_at=_at(d + timedelta(days=5), 20),
             timezone="Europe/Paris", category="meeting", visibility="members", location_kind="room",
             room_id=small.id, organiser_ids=[data.org_ids["Fabrique des Communs"]])

        booking = spaces.request_booking_as_guest(
            big.id, _at(d + timedelta(days=6), 14), _at(d + timedelta(days=6), 17),
            name="Nadia Benali", email="nadia@asso-quartier.example", organisation_name="Association du Quartier",
            category="ngo", purpose="Assemblée générale de l'association (40 personnes).")
        data.booking_ids.append(booking.id)
        booking = spaces.request_booking_as_guest(
            small.id, _at(d + timedelta(days=8), 9), _at(d + timedelta(days=8), 12),
            name="Marc Petit", email="marc@mairie.example", organisation_name="Mairie du 20e",
            category="public_service", purpose="Réunion publique de conseil de quartier.")
        data.booking_ids.append(booking.id)
        db.session.commit()

        debate = events.get_event(admin, data.events["debate"])
        for n, name in enumerate(("Lucie", "Omar", "Chloé")):
            registration, secret = registrations.register(debate, name=f"{name} Citoyenne",
                                                          email=f"{name.lower()}{n}@example.org")
            registrations.confirm(secret)
        db.session.commit()
    return data
