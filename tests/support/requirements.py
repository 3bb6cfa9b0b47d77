"""Optional parts of the test suite (PostgreSQL, browser, Fedify): skip where missing on a user's
machine, fail in CI where ``HALLES_TEST_REQUIRE`` names them."""

from __future__ import annotations

import os

import pytest


def required_parts() -> set[str]:
    return {part.strip() for part in os.environ.get("HALLES_TEST_REQUIRE", "").split(",") if part.strip()}


def missing(part: str, reason: str) -> None:
    """Skip the test, or fail it when the part is required."""
    if part in required_parts():
        pytest.fail(f"{part} is required (HALLES_TEST_REQUIRE) but unavailable: {reason}", pytrace=False)
    pytest.skip(f"{part} unavailable: {reason}")
