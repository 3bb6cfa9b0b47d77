"""The app factory and configuration."""

import pytest

from node.config import ConfigError, load, validate


def test_app_starts_and_answers_problem_json_for_unknown_api_route(client):
    response = client.get("/api/v1/does-not-exist")
    assert response.status_code == 404
    assert response.mimetype == "application/problem+json"
    assert response.get_json()["status"] == 404


def test_validate_lists_every_wrong_value():
    config = load(
        {"SECRET_KEY": ""},
        environ={
            "HALLES_URL": "ftp://x",
            "HALLES_TIMEZONE": "Mars/Olympus",
            "HALLES_LANGUAGE": "de",
            "HALLES_SMTP_URL": "http://mail",
            "DATABASE_URL": "mysql://x/y",
        },
    )
    with pytest.raises(ConfigError) as info:
        validate(config)
    message = str(info.value)
    expected_names = ("HALLES_URL", "HALLES_TIMEZONE", "HALLES_LANGUAGE", "HALLES_SMTP_URL", "DATABASE_URL")
    for expected in (*expected_names, "secret key"):
        assert expected in message


def test_bad_boolean_in_environment_is_named():
    with pytest.raises(ConfigError, match="HALLES_ALLOW_PRIVATE_ADDRESSES"):
        load(environ={"HALLES_ALLOW_PRIVATE_ADDRESSES": "perhaps"})


def test_postgres_url_gets_the_psycopg_driver():
    config = load(environ={"DATABASE_URL": "postgres://u@h/db"})
    assert config["SQLALCHEMY_DATABASE_URI"] == "postgresql+psycopg://u@h/db"


def test_federation_timings_come_from_the_environment_and_are_checked():
    config = load({"SECRET_KEY": "x"}, environ={"HALLES_DELIVERY_BACKOFF_SECONDS": "2.5",
                                                "HALLES_DELIVERY_MAX_ATTEMPTS": "5"})
    assert config["HALLES_DELIVERY_BACKOFF_SECONDS"] == 2.5 and config["HALLES_DELIVERY_MAX_ATTEMPTS"] == 5
    with pytest.raises(ConfigError, match="HALLES_SYNC_INTERVAL_SECONDS"):
        load(environ={"HALLES_SYNC_INTERVAL_SECONDS": "soon"})
    bad = load({"SECRET_KEY": "x"}, environ={"HALLES_DELIVERY_MAX_ATTEMPTS": "0"})
    with pytest.raises(ConfigError, match="HALLES_DELIVERY_MAX_ATTEMPTS"):
        validate(bad)


def test_listing_cache_seconds_are_read_and_checked():
    assert load({"SECRET_KEY": "x"})["HALLES_LISTING_CACHE_SECONDS"] == 1.0
    assert load({"SECRET_KEY": "x"}, environ={"HALLES_LISTING_CACHE_SECONDS": "0"})[
        "HALLES_LISTING_CACHE_SECONDS"] == 0
    with pytest.raises(ConfigError, match="HALLES_LISTING_CACHE_SECONDS"):
        load(environ={"HALLES_LISTING_CACHE_SECONDS": "briefly"})
    with pytest.raises(ConfigError, match="HALLES_LISTING_CACHE_SECONDS"):
        validate(load({"SECRET_KEY": "x"}, environ={"HALLES_LISTING_CACHE_SECONDS": "3600"}))


def test_pages_are_french_by_default_even_for_an_english_browser(client):
    response = client.get("/", headers={"Accept-Language": "en-GB,en;q=0.9"})
    assert response.status_code == 200
    assert 'lang="fr"' in response.get_data(as_text=True)
    switched = client.get("/?lang=en")
    assert 'lang="en"' in switched.get_data(as_text=True)
