"""Follower inboxes on loopback for the fan-out benchmark: a tiny asyncio HTTP/1.1 server, run in its own
process (``python -m benchmarks.loopback``) so that answering costs the sender nothing, that answers
every POST with ``202 Accepted`` on a kept-alive connection and counts requests and connections.

``GET /_stats`` answers ``{"requests": n, "connections": n, "last": unix time of the last POST}``;
``POST /_reset`` sets them back to zero."""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field

ACCEPTED = b"HTTP/1.1 202 Accepted\r\nContent-Length: 0\r\n\r\n"


@dataclass
class Stats:
    requests: int = 0
    connections: int = 0
    last: float = 0.0
    hosts: set[str] = field(default_factory=set)


async def _serve_connection(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, stats: Stats) -> None:
    stats.connections += 1
    try:
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            lines = head.decode("latin-1").split("\r\n")
            method, path, _version = lines[0].split(" ", 2)
            headers = {}
            for line in lines[1:]:
                if ":" in line:
                    name, value = line.split(":", 1)
                    headers[name.strip().lower()] = value.strip()
            length = int(headers.get("content-length") or 0)
            if length:
                await reader.readexactly(length)
            if path == "/_stats":
                body = json.dumps({"requests": stats.requests, "connections": stats.connections,
                                   "last": stats.last, "hosts": len(stats.hosts)}).encode()
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: "
                             + str(len(body)).encode() + b"\r\nConnection: close\r\n\r\n" + body)
                await writer.drain()
                break
            if path == "/_reset":
                stats.requests = stats.connections = 0
                stats.hosts.clear()
                writer.write(b"HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n")
                await writer.drain()
                break
            if method == "POST":
                stats.requests += 1
                stats.last = time.time()
                stats.hosts.add(headers.get("host", ""))
            writer.write(ACCEPTED)
            await writer.drain()
            if headers.get("connection", "").lower() == "close":
                break
    except (asyncio.IncompleteReadError, ConnectionError, ValueError):
        pass
    finally:
        writer.close()


async def _main(port: int) -> None:
    stats = Stats()
    server = await asyncio.start_server(lambda r, w: _serve_connection(r, w, stats), "0.0.0.0", port, backlog=1024)
    print(server.sockets[0].getsockname()[1], flush=True)
    async with server:
        await server.serve_forever()


class LoopbackInboxes:
    """Start the server in a subprocess; ``stats()`` reads its counters."""

    def __init__(self) -> None:
        self.process = subprocess.Popen([sys.executable, "-m", "benchmarks.loopback", "--port", "0"],
                                        stdout=subprocess.PIPE, text=True)
        assert self.process.stdout is not None
        self.port = int(self.process.stdout.readline())

    def url(self, host: str = "127.0.0.1") -> str:
        return f"http://{host}:{self.port}"

    def stats(self) -> dict[str, float]:
        with urllib.request.urlopen(f"{self.url()}/_stats", timeout=5) as response:
            return json.loads(response.read())

    def reset(self) -> None:
        request = urllib.request.Request(f"{self.url()}/_reset", method="POST", data=b"")
        urllib.request.urlopen(request, timeout=5).close()

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(5)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        if self.process.stdout is not None:
            self.process.stdout.close()

    def __enter__(self) -> LoopbackInboxes:
        return self

    def __exit__(self, *_exc) -> None:
        self.stop()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, default=0)
    try:
        asyncio.run(_main(parser.parse_args().port))
    except KeyboardInterrupt:
        pass
