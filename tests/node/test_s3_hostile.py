"""The S3 client against a hostile or broken S3 endpoint: a real HTTP server on a real socket
that answers what a test tells it to (bodies without end, XML bombs, trickles, redirects).

Before: every answer was read whole into memory (``preload_content``) before its status was
even looked at, list pages and errors were parsed with ElementTree (8 MiB of nested ``<a>``
is some 750 MiB of elements), the read timeout applied to each ``recv`` only (a byte every
tenth of a second never timed out) and a listing followed the same continuation token for ever.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import socket
import socketserver
import threading
import time
import tracemalloc
from collections.abc import Callable, Iterator

import pytest

from dicomtls.node.s3 import Credentials, S3Client, S3Error

MIB = 1 << 20
MAX_ERROR = 64 << 10  # dicomtls.node.s3.MAX_ERROR
Answer = Callable[[bytes, socket.socket], None]
"""Given a request head, write the answer (or not) on the socket."""


class HostileS3(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.answer: Answer = lambda head, sock: None
        self.requests: list[bytes] = []
        self.done = threading.Event()
        """Set when a test's client is finished: endless answers stop."""

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class _Handler(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        server = self.server
        assert isinstance(server, HostileS3)
        sock: socket.socket = self.request
        with contextlib.suppress(OSError):
            while True:
                head = b""
                while b"\r\n\r\n" not in head:
                    chunk = sock.recv(65536)
                    if not chunk:
                        return
                    head += chunk
                server.requests.append(head)
                server.answer(head, sock)


@pytest.fixture
def s3() -> Iterator[HostileS3]:
    server = HostileS3()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.done.set()
        server.shutdown()
        server.server_close()
        thread.join()


def client(s3: HostileS3, timeout: float = 5.0) -> S3Client:
    return S3Client(s3.endpoint, Credentials("AK", "SK"), timeout=timeout)


def answer(status: str, body: bytes, *headers: str) -> Answer:
    def send(head: bytes, sock: socket.socket) -> None:
        lines = [f"HTTP/1.1 {status}", f"Content-Length: {len(body)}", *headers]
        sock.sendall("\r\n".join(lines).encode() + b"\r\n\r\n" + body)

    return send


def peak_mib(call: Callable[[], object]) -> tuple[float, BaseException | None]:
    """The Python memory peak while ``call`` runs, and what it raised."""
    tracemalloc.start()
    try:
        call()
        error: BaseException | None = None
    except Exception as exc:
        error = exc
    finally:
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    return peak / MIB, error


def endless(s3: HostileS3, status: str, chunked: bool) -> Answer:
    """64 MiB at most (so the code before the fix ends too), as fast as the client reads."""

    def send(head: bytes, sock: socket.socket) -> None:
        block = b"x" * 65536
        length = "Transfer-Encoding: chunked" if chunked else f"Content-Length: {64 * MIB}"
        sock.sendall(f"HTTP/1.1 {status}\r\n{length}\r\n\r\n".encode())
        for _ in range(1024):
            if s3.done.is_set():
                return
            sock.sendall(b"10000\r\n" + block + b"\r\n" if chunked else block)
        if chunked:
            sock.sendall(b"0\r\n\r\n")

    return send


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
def test_a_ranged_get_answered_with_64_mib_is_cut_off_at_what_was_asked(
    s3: HostileS3, chunked: bool
) -> None:
    s3.answer = endless(s3, "200 OK", chunked)
    peak, error = peak_mib(lambda: client(s3).get("bucket", "key", 0, 65536))
    assert isinstance(error, S3Error) and "more than 65,536 bytes" in str(error), error
    assert peak < 4, peak


def test_an_error_answer_of_64_mib_is_read_no_further_than_64_kib(s3: HostileS3) -> None:
    s3.answer = endless(s3, "403 Forbidden", chunked=False)
    peak, error = peak_mib(lambda: client(s3).get("bucket", "key", 0, 10))
    assert isinstance(error, S3Error), error
    assert f"more than {MAX_ERROR:,} bytes" in str(error)
    assert peak < 4, peak


def test_a_body_trickled_a_byte_at_a_time_ends_within_the_timeout(s3: HostileS3) -> None:
    def trickle(head: bytes, sock: socket.socket) -> None:
        sock.sendall(b"HTTP/1.1 206 Partial Content\r\nContent-Length: 65536\r\n\r\n")
        for _ in range(200):  # 20 s in all, if nothing stops it
            if s3.done.wait(0.1):
                return
            sock.sendall(b"x")

    s3.answer = trickle
    started = time.monotonic()
    with pytest.raises(S3Error, match="not sent within 1 s"):
        client(s3, timeout=1.0).get("bucket", "key", 0, 65536)
    assert time.monotonic() - started < 5


NESTED = b"<ListBucketResult>" + b"<a>" * (2 * MIB // 3)
LAUGHS = (
    b'<?xml version="1.0"?><!DOCTYPE l [<!ENTITY a "aaaaaaaaaa">'
    + b"".join(b'<!ENTITY %c "%s">' % (98 + i, b"&%c;" % (97 + i) * 10) for i in range(8))
    + b"]><ListBucketResult><Contents><Key>&i;</Key><Size>1</Size></Contents></ListBucketResult>"
)
TOO_MANY = (
    b"<ListBucketResult>"
    + b"<Contents><Key>k</Key><Size>1</Size></Contents>" * 1001
    + b"</ListBucketResult>"
)


@pytest.mark.parametrize(
    ("page", "why"),
    [
        (NESTED, "nested past 8 levels"),
        (LAUGHS, "document type declaration"),
        (TOO_MANY, "more than 1,000 entries"),
        (b"<ListBucketResult>" + b"x" * (9 * MIB), "more than 8,388,608 bytes"),
        (b"<ListBucketResult><Contents><Size>1e99</Size></Contents></ListBucketResult>", "number"),
    ],
    ids=["deep", "billion-laughs", "1001-entries", "9-mib", "size"],
)
def test_a_hostile_listing_page_is_refused_at_its_bound(
    s3: HostileS3, page: bytes, why: str
) -> None:
    s3.answer = answer("200 OK", page)
    peak, error = peak_mib(lambda: list(client(s3).list("bucket")))
    assert isinstance(error, S3Error) and why in str(error), error
    assert peak < 24, peak  # the 9 MiB page is read up to 8 MiB, in pieces


def test_a_listing_that_hands_back_the_same_token_is_refused(s3: HostileS3) -> None:
    pages = iter(range(50))  # 50 pages, then the end: the code before the fix ended too

    def same_token(head: bytes, sock: socket.socket) -> None:
        more = b"true" if next(pages, None) is not None else b"false"
        page = (
            b"<ListBucketResult><IsTruncated>" + more + b"</IsTruncated>"
            b"<NextContinuationToken>t</NextContinuationToken>"
            b"<Contents><Key>k</Key><Size>1</Size></Contents></ListBucketResult>"
        )
        answer("200 OK", page)(head, sock)

    s3.answer = same_token
    with pytest.raises(S3Error, match="the same continuation token again"):
        list(client(s3).list("bucket"))
    assert len(s3.requests) == 2


def test_an_error_is_read_from_s3_error_xml_and_anything_else_is_shown_cut_short(
    s3: HostileS3,
) -> None:
    xml = b"<Error><Code>AccessDenied</Code><Message>no</Message></Error>"
    s3.answer = answer("403 Forbidden", xml)
    with pytest.raises(S3Error, match="HTTP 403 AccessDenied: no") as refused:
        client(s3).get("bucket", "key", 0, 10)
    assert refused.value.status == 403
    s3.answer = answer("403 Forbidden", LAUGHS)
    with pytest.raises(S3Error) as refused:
        client(s3).get("bucket", "key", 0, 10)
    assert "aaaaaaaaaaaaaaaaaaaa" not in str(refused.value) and len(str(refused.value)) < 300


def test_a_redirect_is_not_followed(s3: HostileS3) -> None:
    with socket.socket() as elsewhere:
        elsewhere.bind(("127.0.0.1", 0))
        elsewhere.listen()
        elsewhere.settimeout(0)
        where = f"http://127.0.0.1:{elsewhere.getsockname()[1]}/bucket/key"
        s3.answer = answer("307 Temporary Redirect", b"", f"Location: {where}")
        with pytest.raises(S3Error) as refused:
            client(s3).get("bucket", "key", 0, 10)
        assert refused.value.status == 307
        with pytest.raises(BlockingIOError):
            elsewhere.accept()  # nothing came


def test_a_server_that_never_answers_holds_a_call_for_one_timeout(s3: HostileS3) -> None:
    """Each try used to wait out the timeout, three tries in all: a hung endpoint held each
    C-STORE behind it for three times the timeout (three minutes in the node)."""
    started = time.monotonic()
    with pytest.raises(S3Error, match="no answer after 1 try"):
        client(s3, timeout=0.5).get("bucket", "key", 0, 10)
    assert time.monotonic() - started < 3
    assert len(s3.requests) == 1


def test_a_server_failing_at_once_is_tried_three_times(s3: HostileS3) -> None:
    s3.answer = answer("503 Slow Down", b"<Error><Code>SlowDown</Code></Error>")
    with pytest.raises(S3Error, match="SlowDown"):
        client(s3).get("bucket", "key", 0, 10)
    assert len(s3.requests) == 3


def test_a_put_body_the_server_takes_slowly_fails_at_the_low_speed_limit(s3: HostileS3) -> None:
    """The socket's timeout bounds each send, and the kernel's send buffer takes megabytes at
    once, so with the node's 60 s a server reading some 20 KB/s held an upload as long as it
    liked. Scaled down here: a 2 s timeout and a limit of 4 MiB/s against 1.5 MB/s (each send
    then waits some 0.6 s for room, well within the timeout)."""

    def read_slowly(head: bytes, sock: socket.socket) -> None:
        for _ in range(1000):  # 20 s in all, if nothing stops it
            if s3.done.wait(0.02) or not sock.recv(30_000):
                return

    s3.answer = read_slowly
    body = b"x" * (12 * MIB)
    slow = S3Client(s3.endpoint, Credentials("AK", "SK"), timeout=2.0, min_upload_rate=4 * MIB)
    started = time.monotonic()
    with pytest.raises(
        S3Error,
        match=r"^S3 PUT /bucket/key: the server took [0-9,]+ bytes of the body in [0-9.]+ s, less than 4,096 KiB/s$",
    ):
        slow.put("bucket", "key", io.BytesIO(body), len(body), hashlib.sha256(body).digest())
    assert time.monotonic() - started < 6  # the old client: the whole body, then 2 s more
