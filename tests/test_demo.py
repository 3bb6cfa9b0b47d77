"""`make demo` runs `halles demo`: three seeded, peered nodes that each list all three cities' events
within seconds, and that stop cleanly (no process left behind)."""

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests


def free_base_port() -> int:
    for base in range(20000, 60000, 97):
        ports = [base, base + 1, base + 2]
        try:
            for port in ports:
                with socket.socket() as sock:
                    sock.bind(("127.0.0.1", port))
        except OSError:
            continue
        return base
    raise RuntimeError("no three free consecutive ports")


def cities(url: str) -> set[str]:
    response = requests.get(f"{url}/api/v1/events", params={"scope": "network", "limit": 100}, timeout=5)
    items = response.json()["items"]
    return {(item.get("origin") or {}).get("city") or "local" for item in items}


@pytest.mark.slow
def test_demo_starts_three_federated_nodes_and_stops_cleanly(tmp_path):
    base = free_base_port()
    halles = str(Path(sys.executable).with_name("halles"))
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "HALLES_INSTANCE")}
    process = subprocess.Popen([halles, "demo", "--base-port", str(base), "--data-dir", str(tmp_path / "demo")],
                               env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    urls = [f"http://127.0.0.1:{base + i}" for i in range(3)]
    try:
        deadline = time.monotonic() + 180
        seen: dict[str, set[str]] = {}
        while time.monotonic() < deadline:
            if process.poll() is not None:
                pytest.fail(f"halles demo exited early:\n{process.stdout.read()}")
            try:
                seen = {url: cities(url) for url in urls}
            except (requests.RequestException, ValueError, KeyError):
                seen = {}
            if seen and all(len(found) == 3 for found in seen.values()):
                break
            time.sleep(1)
        assert seen and all(len(found) == 3 for found in seen.values()), seen
        assert cities(urls[0]) == {"local", "Lyon", "Marseille"}
    finally:
        process.send_signal(signal.SIGTERM)
        output, _ = process.communicate(timeout=60)
    assert "Les Halles Civiques" in output and "demo stopped" in output
    for url in urls:
        with pytest.raises(requests.ConnectionError):
            requests.get(f"{url}/actor", timeout=2)
