"""Install Fedify once into a cache folder and talk to it through tests/interop/fedify/bridge.mjs.

Fedify is an independent ActivityPub implementation (TypeScript); agreeing with it on proofs and
HTTP signatures in both directions is the best evidence that our wire format is the standard one.
"""

from __future__ import annotations

import json
import os
import select
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any

from tests.support.requirements import missing

FEDIFY_VERSION = "2.3.6"
BRIDGE_SOURCE = Path(__file__).parent / "fedify" / "bridge.mjs"
INSTALL_TIMEOUT = 600
CALL_TIMEOUT = 60


def cache_dir() -> Path:
    configured = os.environ.get("HALLES_FEDIFY_CACHE")
    base = Path(configured) if configured else Path.home() / ".cache" / "halles" / f"fedify-{FEDIFY_VERSION}"
    return base


def _installed_version(folder: Path) -> str | None:
    manifest = folder / "node_modules" / "@fedify" / "fedify" / "package.json"
    try:
        return json.loads(manifest.read_text())["version"]
    except (OSError, ValueError, KeyError):
        return None


def ensure_fedify() -> Path:
    """Return the folder where Fedify is installed; skip (or fail, when required) if impossible."""
    node, npm = shutil.which("node"), shutil.which("npm")
    if not node or not npm:
        missing("fedify", "node and npm must be on PATH")
    folder = cache_dir()
    if _installed_version(folder) != FEDIFY_VERSION:
        folder.mkdir(parents=True, exist_ok=True)
        manifest = folder / "package.json"
        if not manifest.exists():
            manifest.write_text(json.dumps({"name": "halles-fedify-interop", "private": True, "type": "module"}))
        try:
            done = subprocess.run(
                [npm, "install", "--no-audit", "--no-fund", f"@fedify/fedify@{FEDIFY_VERSION}"],
                cwd=folder,
                capture_output=True,
                text=True,
                timeout=INSTALL_TIMEOUT,
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            missing("fedify", f"npm install failed: {exc}")
        if done.returncode != 0 or _installed_version(folder) != FEDIFY_VERSION:
            missing("fedify", f"npm install @fedify/fedify@{FEDIFY_VERSION} failed: {done.stderr[-2000:]}")
    # ESM resolves packages from the script's own folder, so the bridge runs from the cache.
    target = folder / "bridge.mjs"
    source = BRIDGE_SOURCE.read_text()
    if not target.exists() or target.read_text() != source:
        target.write_text(source)
    return folder


class FedifyBridge:
    def __init__(self, folder: Path) -> None:
        self._stderr = tempfile.TemporaryFile()
        self._process = subprocess.Popen(
            [shutil.which("node") or "node", "bridge.mjs"],
            cwd=folder,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._stderr,
        )
        self._next_id = 0

    def _stderr_tail(self) -> str:
        self._stderr.seek(0)
        return self._stderr.read().decode("utf-8", "replace")[-3000:]

    def call(self, command: str, **args: Any) -> Any:
        assert self._process.stdin and self._process.stdout
        self._next_id += 1
        message = json.dumps({"id": self._next_id, "command": command, "args": args}) + "\n"
        try:
            self._process.stdin.write(message.encode())
            self._process.stdin.flush()
        except BrokenPipeError:
            raise RuntimeError(f"the Fedify bridge died:\n{self._stderr_tail()}") from None
        ready, _, _ = select.select([self._process.stdout], [], [], CALL_TIMEOUT)
        line = self._process.stdout.readline() if ready else b""
        if not line:
            raise RuntimeError(f"no answer from the Fedify bridge to {command}:\n{self._stderr_tail()}")
        answer = json.loads(line)
        if answer.get("id") != self._next_id:
            raise RuntimeError(f"out-of-order answer from the Fedify bridge: {answer}")
        if "error" in answer:
            raise RuntimeError(f"Fedify bridge error in {command}: {answer['error']}")
        return answer["result"]

    def close(self) -> None:
        if self._process.stdin:
            self._process.stdin.close()
        try:
            self._process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()
        if self._process.stdout:
            self._process.stdout.close()
        self._stderr.close()
