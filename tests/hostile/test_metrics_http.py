"""The node's HTTP side door, ``serve --metrics-port`` (/metrics, and /healthz for a balancer),
against a real ``dicomtls serve``: slowloris, idle connections by the hundred, request heads
of megabytes, odd methods, HTTP/0.9, pipelining.

Before: a thread per connection (``ThreadingWSGIServer``) with no timeout and no bound on
how many, and up to 100 header lines of 64 KiB each held per connection. 300 silent
connections were 300 threads for as long as the attacker liked; 20 connections sending
6 MB of headers took about 120 MiB.
"""

from __future__ import annotations

import contextlib
import re
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from .conftest import LiveNode, _running, peer_name, start

#: What the node allows a request head (request line and headers), and for how long.
MAX_HEAD = 8192
HEAD_SECONDS = 5.0
MAX_CONNECTIONS = 512
MIB = 1024  # /proc reports KiB


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveNode]:
    tmp = tmp_path_factory.mktemp("metrics-node")
    yield from _running(start(tmp, "--no-tls", "--metrics-port", "0"))


def metrics_address(node: LiveNode) -> tuple[str, int]:
    found = re.search(r"metrics on http://([^:/]+):(\d+)/metrics", node.output())
    assert found, node.output()
    return found[1], int(found[2])


#: Where the connections come from whose log lines no test counts (the node logs one per
#: misbehaving connection): their ports, reused later, must not be taken for another
#: test's peer on 127.0.0.1, whose lines are counted at teardown.
IDLE_FROM, FLOOD_FROM, ODD_FROM, BIG_FROM = "127.0.0.2", "127.0.0.3", "127.0.0.4", "127.0.0.5"


def connect(node: LiveNode, source: str = "127.0.0.1", timeout: float = 30) -> socket.socket:
    return socket.create_connection(metrics_address(node), timeout, source_address=(source, 0))


def exchange(node: LiveNode, request: bytes, timeout: float = 10.0) -> bytes:
    """Send ``request`` and read until the node closes the connection."""
    with connect(node, ODD_FROM, timeout) as sock:
        sock.sendall(request)
        return read_to_end(sock)


def read_to_end(sock: socket.socket) -> bytes:
    data = b""
    with contextlib.suppress(ConnectionResetError):
        while chunk := sock.recv(65536):
            data += chunk
    return data


def healthz(node: LiveNode) -> bytes:
    return exchange(node, b"GET /healthz HTTP/1.1\r\nHost: node\r\n\r\n", timeout=5.0)


def status_of(answer: bytes) -> bytes:
    """The status code of an HTTP/1.x answer (b"" if there is none)."""
    found = re.match(rb"HTTP/1\.[01] (\d{3}) ", answer)
    return found[1] if found else b""


def threads(node: LiveNode) -> int:
    for line in Path(f"/proc/{node.proc.pid}/status").read_text().splitlines():
        if line.startswith("Threads:"):
            return int(line.split()[1])
    raise AssertionError("no Threads line")


def test_the_endpoint_listens_on_loopback_unless_told_otherwise(node: LiveNode) -> None:
    assert metrics_address(node)[0] == "127.0.0.1"


def test_idle_and_slow_clients_cost_no_thread_are_cut_off_and_healthz_still_answers(
    node: LiveNode,
) -> None:
    before = threads(node)
    attackers = [connect(node, IDLE_FROM) for _ in range(300)]
    stop = threading.Event()
    trickler = connect(node)

    def trickle() -> None:  # one byte every 0.2 s, never ending the head: slowloris
        request = b"GET /healthz HTTP/1.1\r\n" + b"X-Slow: " + b"a" * 10_000
        with contextlib.suppress(OSError):
            for byte in request:
                trickler.send(bytes([byte]))
                if stop.wait(0.2):
                    return

    sender = threading.Thread(target=trickle, daemon=True)
    sender.start()
    try:
        for sock in attackers[::2]:
            sock.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n")  # a head never finished
        assert status_of(healthz(node)) == b"200"
        assert threads(node) < before + 10
        started = time.monotonic()
        for sock in [*attackers, trickler]:
            answer = read_to_end(sock)  # the node closes each one (timeout 30 s: the test fails)
            assert answer == b"" or status_of(answer) == b"408", answer
        assert time.monotonic() - started < HEAD_SECONDS * 3
        line = node.wait_for(peer_name(trickler))
        assert "request head not complete within 5 s" in line, line
    finally:
        stop.set()
        for sock in [*attackers, trickler]:
            sock.close()
        sender.join()


def test_a_request_head_of_megabytes_is_refused_at_8_kib_and_costs_no_memory(
    node: LiveNode,
) -> None:
    before = node.rss_kib()
    header = b"X-Big: " + b"b" * 60_000 + b"\r\n"
    socks = [connect(node, BIG_FROM) for _ in range(20)]
    try:
        peak = before
        for sock in socks:
            with contextlib.suppress(OSError):  # the node stops reading, then closes
                sock.sendall(b"GET /metrics HTTP/1.1\r\n" + header * 99)
            peak = max(peak, node.rss_kib())
        for sock in socks:
            answer = read_to_end(sock)
            assert status_of(answer) == b"431", answer[:200]
        assert peak - before < 32 * MIB, (before, peak)
        line = node.wait_for(peer_name(socks[0]))
        assert f"request head past {MAX_HEAD:,} bytes" in line, line
        for sock in socks[1:]:
            node.wait_for(peer_name(sock))
    finally:
        for sock in socks:
            sock.close()
    assert status_of(healthz(node)) == b"200"


@pytest.mark.parametrize(
    ("request_bytes", "status"),
    [
        (b"POST /healthz HTTP/1.1\r\nContent-Length: 0\r\n\r\n", b"405"),
        (b"DELETE /metrics HTTP/1.1\r\n\r\n", b"405"),
        (b"GET /../../etc/passwd HTTP/1.1\r\n\r\n", b"404"),
        (b"GET /healthz\r\n\r\n", b"400"),  # HTTP/0.9: no version, so no headers either
        (b"GET /healthz HTTP/2.0\r\n\r\n", b"505"),
        (b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n", b"400"),  # TLS on the port
        (b"GET  /healthz  HTTP/1.1\r\n\r\n", b"400"),
    ],
)
def test_odd_requests_get_a_status_and_the_connection_ends(
    node: LiveNode, request_bytes: bytes, status: bytes
) -> None:
    answer = exchange(node, request_bytes)
    assert status_of(answer) == status, answer
    assert b"\r\nConnection: close\r\n" in answer


def test_pipelined_requests_get_one_answer_and_the_connection_ends(node: LiveNode) -> None:
    one = b"GET /healthz HTTP/1.1\r\nHost: node\r\n\r\n"
    answer = exchange(node, one * 50)
    assert answer.count(b"HTTP/1.1 ") == 1, answer
    assert status_of(answer) == b"200" and answer.endswith(b"\r\n\r\nok\n")


def test_metrics_and_healthz_still_answer(node: LiveNode) -> None:
    answer = exchange(node, b"GET /metrics HTTP/1.1\r\nHost: node\r\n\r\n")
    assert status_of(answer) == b"200", answer[:200]
    assert b"dicomtls_associations_total" in answer
    head = exchange(node, b"HEAD /healthz HTTP/1.1\r\n\r\n")
    assert status_of(head) == b"200" and head.endswith(b"\r\n\r\n"), head


def test_past_512_connections_the_oldest_idle_one_makes_room_for_the_balancer(
    node: LiveNode,
) -> None:
    flood = [connect(node, FLOOD_FROM) for _ in range(MAX_CONNECTIONS + 40)]
    try:
        assert status_of(healthz(node)) == b"200"
        oldest = flood[0]
        assert read_to_end(oldest) == b""  # closed at once, not after its 5 s
        line = node.wait_for(peer_name(oldest))
        assert f"to make room: {MAX_CONNECTIONS} connections open" in line, line
    finally:
        for sock in flood:
            sock.close()
