"""Run tests/interop/fedify/server.mjs (a Fedify 2.3.6 ActivityPub server) next to a Halles node
served over HTTPS with a test certificate authority, and talk to both from pytest."""

from __future__ import annotations

import datetime as dt
import ipaddress
import json
import os
import queue
import shutil
import ssl
import subprocess
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from werkzeug.serving import make_server

from tests.support.nodes import Node
from tests.support.smtp import free_port

from .fedify_bridge import ensure_fedify

SERVER_SOURCE = Path(__file__).parent / "fedify" / "server.mjs"
START_TIMEOUT = 60
CALL_TIMEOUT = 60


class CertificateAuthority:
    """A throw-away certificate authority and a server certificate for 127.0.0.1 it signed."""

    def __init__(self, folder: Path) -> None:
        now = dt.datetime.now(dt.UTC)
        ca_key = ec.generate_private_key(ec.SECP256R1())
        ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Halles test CA")])
        ca_cert = (
            x509.CertificateBuilder()
            .subject_name(ca_name).issuer_name(ca_name).public_key(ca_key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                         content_commitment=False, key_encipherment=False, data_encipherment=False,
                                         key_agreement=False, encipher_only=False, decipher_only=False), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
            .sign(ca_key, hashes.SHA256())
        )
        key = ec.generate_private_key(ec.SECP256R1())
        cert = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
            .issuer_name(ca_name).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
                                                        x509.DNSName("localhost")]), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
            .sign(ca_key, hashes.SHA256())
        )
        self.ca_file = folder / "ca.pem"
        self.ca_file.write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
        self.cert_file = folder / "server.pem"
        self.cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        self.key_file = folder / "server.key"
        self.key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                    serialization.NoEncryption()))

    def server_context(self) -> ssl.SSLContext:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(self.cert_file, self.key_file)
        return context


class TLSNode(Node):
    """A node whose public URL is https://127.0.0.1:PORT, served over TLS with the test CA's certificate."""

    def __init__(self, make_app, *, ca: CertificateAuthority, name: str, city: str, **config: Any) -> None:
        port = free_port()
        super().__init__(make_app, name=name, city=city, port=port, HALLES_URL=f"https://127.0.0.1:{port}", **config)
        self.url = f"https://127.0.0.1:{port}"
        self.ca = ca

    def start(self) -> TLSNode:
        self.server = make_server("127.0.0.1", self.port, self.app, threaded=True,
                                  ssl_context=self.ca.server_context())
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        return self


class FedifyServer:
    """The Node.js process; reports and listener events are collected as they are printed."""

    def __init__(self, ca_file: Path) -> None:
        folder = ensure_fedify()
        # ESM resolves packages from the script's own folder, so the server runs from the cache.
        target = folder / "server.mjs"
        source = SERVER_SOURCE.read_text()
        if not target.exists() or target.read_text() != source:
            target.write_text(source)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = dict(os.environ, FEDIFY_PORT=str(self.port), NODE_EXTRA_CA_CERTS=str(ca_file))
        self._stderr = tempfile.TemporaryFile()
        self._process = subprocess.Popen([shutil.which("node") or "node", "server.mjs"], cwd=folder, env=env,
                                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._stderr)
        self.reports: list[dict[str, Any]] = []
        self.events: list[dict[str, Any]] = []
        self.logs: list[str] = []
        self._answers: dict[int, queue.Queue] = {}
        self._ready = threading.Event()
        self._lock = threading.Lock()
        self._next_id = 0
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        if not self._ready.wait(START_TIMEOUT):
            self.close()
            raise RuntimeError(f"the Fedify server did not start:\n{self.stderr_tail()}")

    def _read(self) -> None:
        assert self._process.stdout
        for raw in self._process.stdout:
            try:
                message = json.loads(raw)
            except ValueError:
                self.logs.append(raw.decode("utf-8", "replace"))
                continue
            with self._lock:
                if "ready" in message:
                    self._ready.set()
                elif "report" in message:
                    self.reports.append(message["report"])
                elif "event" in message:
                    self.events.append(message["event"])
                elif "log" in message:
                    self.logs.append(message["log"])
                elif "id" in message and message["id"] in self._answers:
                    self._answers[message["id"]].put(message)

    def stderr_tail(self) -> str:
        self._stderr.seek(0)
        return self._stderr.read().decode("utf-8", "replace")[-3000:]

    def call(self, command: str, **args: Any) -> Any:
        assert self._process.stdin
        with self._lock:
            self._next_id += 1
            call_id = self._next_id
            self._answers[call_id] = queue.Queue()
        self._process.stdin.write((json.dumps({"id": call_id, "command": command, "args": args}) + "\n").encode())
        self._process.stdin.flush()
        try:
            answer = self._answers[call_id].get(timeout=CALL_TIMEOUT)
        except queue.Empty:
            raise RuntimeError(f"no answer from the Fedify server to {command}:\n{self.stderr_tail()}") from None
        if "error" in answer:
            raise RuntimeError(f"Fedify server error in {command}: {answer['error']}\n{self.logs[-5:]}")
        return answer["result"]

    def wait_for(self, what: str, predicate, *, count: int = 1, timeout: float = 20) -> list[dict[str, Any]]:
        """The first ``count`` reports (what="reports") or listener events matching ``predicate``."""
        deadline = time.monotonic() + timeout
        while True:
            with self._lock:
                found = [item for item in getattr(self, what) if predicate(item)]
            if len(found) >= count or time.monotonic() > deadline:
                return found
            time.sleep(0.05)

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
