"""The Fedify interop tests skip where Node.js is missing, unless HALLES_TEST_REQUIRE names fedify."""

from __future__ import annotations

import pytest

from . import fedify_bridge


def test_missing_node_skips(monkeypatch):
    monkeypatch.setattr(fedify_bridge.shutil, "which", lambda name: None)
    monkeypatch.setenv("HALLES_TEST_REQUIRE", "postgres")
    with pytest.raises(pytest.skip.Exception, match="fedify unavailable: node and npm"):
        fedify_bridge.ensure_fedify()


def test_missing_node_fails_when_required(monkeypatch):
    monkeypatch.setattr(fedify_bridge.shutil, "which", lambda name: None)
    monkeypatch.setenv("HALLES_TEST_REQUIRE", "postgres, fedify,browser")
    with pytest.raises(pytest.fail.Exception, match="fedify is required"):
        fedify_bridge.ensure_fedify()


def test_failed_install_skips_or_fails(monkeypatch, tmp_path):
    monkeypatch.setenv("HALLES_FEDIFY_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(fedify_bridge.shutil, "which", lambda name: "/bin/false")
    monkeypatch.delenv("HALLES_TEST_REQUIRE", raising=False)
    with pytest.raises(pytest.skip.Exception, match="npm install"):
        fedify_bridge.ensure_fedify()
    monkeypatch.setenv("HALLES_TEST_REQUIRE", "fedify")
    with pytest.raises(pytest.fail.Exception, match="npm install"):
        fedify_bridge.ensure_fedify()
