"""`halles demo`: start three federated nodes on 127.0.0.1, each a real gunicorn + `halles worker`
pair with its own instance folder and SQLite database, peer them, seed them, and stop them all
cleanly on Ctrl-C. A second run reuses the data folder (delete it to start afresh)."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import requests

from node.demo.data import NODES

DEMO_PASSWORD = "demo-halles-2026"
STARTUP_TIMEOUT = 60


def _bin(name: str) -> str:
    candidate = Path(sys.executable).with_name(name)
    return str(candidate) if candidate.exists() else name


def node_env(instance: Path) -> dict[str, str]:
    env = dict(os.environ)
    env.pop("DATABASE_URL", None)  # the demo runs on embedded SQLite, one file per node
    env.update(
        {
            "HALLES_INSTANCE": str(instance),
            "HALLES_ALLOW_PRIVATE_ADDRESSES": "true",  # the three nodes talk over 127.0.0.1
            "HALLES_DELIVERY_BACKOFF_SECONDS": "2",
            "HALLES_SYNC_INTERVAL_SECONDS": "30",
            "PYTHONUNBUFFERED": "1",
        }
    )
    return env


def _run(args: list[str], env: dict[str, str], *, check: bool = True) -> subprocess.CompletedProcess:
    result = subprocess.run(args, env=env, capture_output=True, text=True)
    if check and result.returncode != 0:
        raise RuntimeError(f"{' '.join(args)} failed:\n{result.stdout}{result.stderr}")
    return result


def _wait_for(url: str, timeout: float = STARTUP_TIMEOUT) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if requests.get(url, timeout=2).status_code < 500:
                return
        except requests.RequestException:
            pass
        time.sleep(0.3)
    raise RuntimeError(f"{url} did not answer within {timeout} s")


def run(base_port: int, data_dir: Path, *, echo=print, stop_after: float | None = None) -> None:
    data_dir.mkdir(parents=True, exist_ok=True)
    halles = _bin("halles")
    # `kill` or a service manager stops the demo with SIGTERM: clean up exactly as for Ctrl-C.
    previous = signal.signal(signal.SIGTERM, _interrupt)
    processes: list[subprocess.Popen] = []
    nodes = []
    try:
        for index, spec in enumerate(NODES):
            port = base_port + index
            url = f"http://127.0.0.1:{port}"
            instance = data_dir / spec["key"]
            env = node_env(instance)
            fresh = not (instance / "node.json").exists()
            if fresh:
                echo(f"· creating {spec['name']} ({spec['city']}) in {instance}")
                try:
                    _run([halles, "init", "--name", spec["name"], "--city", spec["city"], "--url", url,
                          "--address", spec["address"]], env)
                    _run([halles, "demo-seed", spec["key"], "--password", DEMO_PASSWORD], env)
                except RuntimeError:
                    # Half-made nodes would be reused next time: start that one afresh instead.
                    shutil.rmtree(instance, ignore_errors=True)
                    raise
            else:
                _run([halles, "db", "upgrade"], env)
            log = open(instance / "demo.log", "a")  # noqa: SIM115 - closed with the process
            processes.append(subprocess.Popen(
                [_bin("gunicorn"), "--bind", f"127.0.0.1:{port}", "--workers", "2", "--threads", "4",
                 "--access-logfile", "-", "node.wsgi:app"],
                env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True))
            processes.append(subprocess.Popen([halles, "worker"], env=env, stdout=log, stderr=subprocess.STDOUT,
                                              start_new_session=True))
            nodes.append((spec, url, env, fresh))
        for _spec, url, _node_env, _fresh in nodes:
            _wait_for(f"{url}/actor")
        if any(fresh for *_rest, fresh in nodes):
            echo("· peering the three nodes (charter attestations, then approvals)")
            _peer_all(nodes, halles)
        echo("")
        echo("Halles demo network is running:")
        for spec, url, _node_env, _fresh in nodes:
            echo(f"  {spec['name']:<28} {spec['city']:<10} {url}")
        echo("")
        echo(f"Sign in as admin@{NODES[0]['key']}.demo / {DEMO_PASSWORD} (same pattern on each node).")
        echo("API example: curl '" + nodes[0][1] + "/api/v1/events?scope=network'")
        echo("Press Ctrl-C to stop.")
        started = time.monotonic()
        while all(process.poll() is None for process in processes):
            if stop_after is not None and time.monotonic() - started > stop_after:
                break
            time.sleep(0.5)
        else:
            echo("a demo process stopped unexpectedly; see demo.log in the data folder")
    except KeyboardInterrupt:
        echo("\nstopping…")
    finally:
        for process in processes:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
        for process in processes:
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
        signal.signal(signal.SIGTERM, previous)
        echo("demo stopped")


def _interrupt(_signum, _frame) -> None:
    raise KeyboardInterrupt


def _peer_all(nodes, halles: str) -> None:
    for spec, _url, env, _fresh in nodes:
        for other_spec, other_url, _other_env, _ in nodes:
            if other_spec is not spec:
                _run([halles, "peer", "request", other_url], env)
    deadline = time.monotonic() + STARTUP_TIMEOUT
    pending = {(a[0]["key"], b[0]["key"]) for a in nodes for b in nodes if a is not b}
    while pending and time.monotonic() < deadline:
        for spec, _url, env, _fresh in nodes:
            for other_spec, other_url, _other_env, _ in nodes:
                if (other_spec["key"], spec["key"]) in pending:
                    if _run([halles, "peer", "approve", other_url], env, check=False).returncode == 0:
                        pending.discard((other_spec["key"], spec["key"]))
        if pending:
            time.sleep(1)
    if pending:
        raise RuntimeError(f"peering requests did not arrive: {sorted(pending)}")
