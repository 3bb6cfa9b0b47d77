from __future__ import annotations

import pytest

from .fedify_bridge import FedifyBridge, ensure_fedify


@pytest.fixture(scope="module")
def fedify():
    """One Node.js process per test module, speaking to Fedify."""
    bridge = FedifyBridge(ensure_fedify())
    yield bridge
    bridge.close()
