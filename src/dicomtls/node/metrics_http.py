"""The HTTP side door of a node: ``GET /metrics`` for Prometheus, ``GET /healthz`` for a balancer.

It runs on an event loop of its own, in a thread of its own: a scrape or a slow health check
never waits for the DICOM loop, and nothing an HTTP client does can delay that loop. The
port is reachable by whoever can reach the balancer's checks, so every connection is held
to little: one request head of at most :data:`MAX_HEAD` bytes, complete within
:data:`HEAD_SECONDS` (a slowloris sending a byte a second is cut off like a silent client),
one answer, then the connection ends (no keep-alive, so pipelined requests get one answer).
At most :data:`MAX_CONNECTIONS` are open; past that the oldest one still sending its head
is closed to make room, so a flood of idle connections cannot keep a balancer's check out.
Each connection closed for misbehaving gets one log line naming the peer; good ones none.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass

from prometheus_client import CollectorRegistry
from prometheus_client.exposition import choose_encoder

from dicomtls.logs import get_logger
from dicomtls.net.link import LISTEN_BACKLOG

__all__ = ["HEAD_SECONDS", "MAX_CONNECTIONS", "MAX_HEAD", "Health", "MetricsServer", "serve"]

log = get_logger("dicomtls.node")

MAX_HEAD = 8192
"""Bytes of request line and headers (a balancer's check is under 100, a scrape under 300)."""
HEAD_SECONDS = 5.0
"""For the whole request head, however it trickles in."""
ANSWER_SECONDS = 10.0
"""For the client to take the answer (a scrape is tens of KiB) before it is cut off."""
HEALTH_SECONDS = 10.0
"""For the node's health check (index and object store asked) before /healthz says 503."""
MAX_CONNECTIONS = 512
LINGER_SECONDS = 2.0
"""After a refusal, how long the client's further bytes are read and dropped."""

Health = Callable[[], "str | None"]
"""Why the node should get no new connections now (draining, index or store unreachable),
or None when it is healthy."""

_REQUEST_LINE = re.compile(rb"([A-Z]+) (/[!-~]*) (HTTP/\d\.\d)\r\n")
_REASONS = {
    200: "OK",
    400: "Bad Request",
    404: "Not Found",
    405: "Method Not Allowed",
    408: "Request Timeout",
    431: "Request Header Fields Too Large",
    503: "Service Unavailable",
    505: "HTTP Version Not Supported",
}


@dataclass
class _Answer:
    status: int
    body: bytes
    content_type: str = "text/plain; charset=utf-8"
    allow: bool = False
    """Say which methods there are (with 405)."""


class _Refused(Exception):
    """A request the endpoint will not serve: its status, and the reason for the log line."""

    def __init__(self, status: int, why: str) -> None:
        super().__init__(why)
        self.status = status


def _peer_name(writer: asyncio.StreamWriter) -> str:
    address = writer.get_extra_info("peername")
    if isinstance(address, tuple) and len(address) >= 2:
        host = str(address[0])
        return f"[{host}]:{address[1]}" if ":" in host else f"{host}:{address[1]}"
    return str(address)


class _Endpoint:
    """The connections, the routes and the health check of one server (all on its loop)."""

    def __init__(self, registry: CollectorRegistry, health: Health | None) -> None:
        self._registry = registry
        self._health = health
        self._checker = concurrent.futures.ThreadPoolExecutor(1, "dicomtls-healthz")
        self._check: asyncio.Future[str | None] | None = None
        self._open: dict[asyncio.StreamWriter, bool] = {}
        """Every open connection, oldest first: True while its head is still awaited."""
        self._evicted: set[asyncio.StreamWriter] = set()

    async def connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer = _peer_name(writer)
        if not self._make_room():
            log.warning(
                "metrics endpoint: refused %s: %d connections still being answered",
                peer,
                MAX_CONNECTIONS,
            )
            writer.transport.abort()
            return
        self._open[writer] = True
        try:
            await self._serve(reader, writer, peer)
        except asyncio.CancelledError:
            pass  # the server closing: end as a finished task (3.11's streams log a cancelled one)
        finally:
            self._open.pop(writer, None)
            self._evicted.discard(writer)
            writer.transport.abort()  # closed already when all went well; frees it otherwise

    def _make_room(self) -> bool:
        """Below the bound, or the oldest connection still sending its head closed."""
        if len(self._open) < MAX_CONNECTIONS:
            return True
        waiting = next((w for w, head in self._open.items() if head), None)
        if waiting is None:
            return False
        self._evicted.add(waiting)
        self._open.pop(waiting)
        waiting.transport.abort()
        return True

    async def _serve(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, peer: str
    ) -> None:
        try:
            async with asyncio.timeout(HEAD_SECONDS):
                head = await reader.readuntil(b"\r\n\r\n")
            self._open[writer] = False
            answer = await self._answer(head)
        except _Refused as refused:
            log.warning("metrics endpoint: refused %s: %s", peer, refused)
            answer = _Answer(refused.status, f"{refused}\n".encode(), allow=refused.status == 405)
            head = b""
        except TimeoutError:
            why = f"request head not complete within {HEAD_SECONDS:g} s"
            log.warning("metrics endpoint: closed %s: %s", peer, why)
            answer, head = _Answer(408, f"{why}\n".encode()), b""
        except asyncio.LimitOverrunError:
            why = f"request head past {MAX_HEAD:,} bytes"
            log.warning("metrics endpoint: refused %s: %s", peer, why)
            answer, head = _Answer(431, f"{why}\n".encode()), b""
        except (asyncio.IncompleteReadError, ConnectionError):
            if writer in self._evicted:
                log.warning(
                    "metrics endpoint: closed %s to make room: %d connections open",
                    peer,
                    MAX_CONNECTIONS,
                )
            return  # gone before its head was complete (a port check, most often): no answer
        await self._send(writer, peer, answer, head.startswith(b"HEAD "))
        await _linger(reader, writer)

    async def _answer(self, head: bytes) -> _Answer:
        request = _REQUEST_LINE.match(head)
        if request is None:
            raise _Refused(400, "not an HTTP/1 request line")
        method, target, version = request.groups()
        if version not in (b"HTTP/1.0", b"HTTP/1.1"):
            raise _Refused(505, "only HTTP/1.0 and HTTP/1.1")
        if method not in (b"GET", b"HEAD"):
            raise _Refused(405, "only GET and HEAD")
        path = target.partition(b"?")[0]
        if path == b"/healthz":
            problem = await self._checked()
            if problem is None:
                return _Answer(200, b"ok\n")
            return _Answer(503, f"unavailable: {problem}\n".encode())
        if path == b"/metrics":
            encoder, content_type = choose_encoder(_header(head, b"accept") or "")
            return _Answer(200, encoder(self._registry), content_type)
        raise _Refused(404, "only /metrics and /healthz")

    async def _checked(self) -> str | None:
        """The node's health; one check at a time, shared by the requests that wait for it."""
        if self._health is None:
            return None
        if self._check is None or self._check.done():
            self._check = asyncio.get_running_loop().run_in_executor(self._checker, self._health)
        try:
            return await asyncio.wait_for(asyncio.shield(self._check), HEALTH_SECONDS)
        except TimeoutError:
            return f"health check took longer than {HEALTH_SECONDS:g} s"
        except Exception as exc:  # a check that fails is a reason in itself
            return f"health check failed: {exc}"

    async def _send(
        self, writer: asyncio.StreamWriter, peer: str, answer: _Answer, head_only: bool
    ) -> None:
        lines = [
            f"HTTP/1.1 {answer.status} {_REASONS[answer.status]}",
            f"Content-Type: {answer.content_type}",
            f"Content-Length: {len(answer.body)}",
            "Cache-Control: no-store",
            "Connection: close",
            *(["Allow: GET, HEAD"] if answer.allow else []),
        ]
        writer.write("\r\n".join(lines).encode() + b"\r\n\r\n")
        if not head_only:
            writer.write(answer.body)
        try:
            async with asyncio.timeout(ANSWER_SECONDS):
                await writer.drain()
        except TimeoutError:
            log.warning(
                "metrics endpoint: closed %s: it did not take its answer within %g s",
                peer,
                ANSWER_SECONDS,
            )
        except ConnectionError:
            pass  # it left without reading the answer: nothing more to do

    def close(self) -> None:
        for writer in list(self._open):
            writer.transport.abort()
        self._checker.shutdown(wait=False, cancel_futures=True)


async def _linger(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """End our side once the answer is out, then read and drop what the client still sends
    until it closes (bounded in time): closing with its bytes unread would reset the
    connection before it read our answer (a client sending megabytes of headers would never
    see its 431, one pipelining requests would lose its answer)."""
    try:
        writer.write_eof()
        async with asyncio.timeout(LINGER_SECONDS):
            while await reader.read(65536):
                pass
    except (TimeoutError, ConnectionError, OSError):
        pass  # it had its chance to read the answer; the caller aborts the connection


def _header(head: bytes, name: bytes) -> str | None:
    """The value of header ``name`` (lower case) in a request head, if it is there."""
    for line in head.split(b"\r\n")[1:]:
        field, sep, value = line.partition(b":")
        if sep and field.strip().lower() == name:
            return value.strip().decode("latin-1")
    return None


class MetricsServer:
    """A running /metrics endpoint; :meth:`close` stops it and frees the port."""

    port: int
    host: str

    def __init__(self, host: str) -> None:
        self.host = host
        self.port = 0
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._run, name="dicomtls-metrics", daemon=True)
        self._server: asyncio.Server | None = None
        self._endpoint: _Endpoint | None = None
        self._closed = False

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        try:
            self._loop.run_forever()
        finally:
            self._loop.close()

    def start(self, registry: CollectorRegistry, port: int, health: Health | None) -> None:
        self._thread.start()
        endpoint = _Endpoint(registry, health)
        started = asyncio.run_coroutine_threadsafe(
            # the DICOM listener's backlog: with asyncio's 100 a flood makes the kernel drop
            # SYNs, and the balancer's check waits 1 s, 2 s, ... for its retry
            asyncio.start_server(
                endpoint.connection, self.host, port, limit=MAX_HEAD, backlog=LISTEN_BACKLOG
            ),
            self._loop,
        )
        try:
            self._server = started.result()
        except BaseException:
            endpoint.close()
            self._stop_loop()
            raise
        self._endpoint = endpoint
        self.port = int(self._server.sockets[0].getsockname()[1])

    def close(self) -> None:
        """Stop serving, close the listening socket and every connection, end the thread."""
        if self._closed:
            return
        self._closed = True
        server, endpoint = self._server, self._endpoint

        async def stop() -> None:
            if server is not None:
                server.close()
            if endpoint is not None:
                endpoint.close()
            if server is not None:
                await server.wait_closed()
            connections = asyncio.all_tasks() - {asyncio.current_task()}
            for task in connections:  # ended here, not destroyed pending with the loop
                task.cancel()
            await asyncio.gather(*connections, return_exceptions=True)

        asyncio.run_coroutine_threadsafe(stop(), self._loop).result(timeout=5.0)
        self._stop_loop()

    def _stop_loop(self) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=5.0)

    def __enter__(self) -> MetricsServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def serve(
    registry: CollectorRegistry, port: int, host: str, health: Health | None
) -> MetricsServer:
    """Serve ``registry`` and ``health`` on ``host:port`` (0: a free port, in ``.port``)."""
    server = MetricsServer(host)
    try:
        server.start(registry, port, health)
    except OSError as exc:
        raise OSError(
            exc.errno, f"cannot serve metrics on {host}:{port}: {exc.strerror or exc}"
        ) from exc
    return server
