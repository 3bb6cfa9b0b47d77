"""Fixtures of the web tests: a seeded node, and clients signed in with a role."""

from __future__ import annotations

import pytest

from tests.web.seed import PASSWORD, seed


@pytest.fixture
def seeded(app):
    return seed(app)


@pytest.fixture
def login(app):
    """``login(client, email)`` signs a test client in through the login form."""

    def _login(client, email: str, password: str = PASSWORD):
        response = client.post("/login", data={"email": email, "password": password})
        assert response.status_code == 302, response.get_data(as_text=True)[:2000]
        return client

    return _login
