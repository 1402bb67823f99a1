"""The syslog sinks against a collector that misbehaves, on real sockets with real TLS: one that
completes the handshake and then never reads, one that goes away and comes back.

Before: the queue was bounded in messages only (10,000), and a Query message carries the
C-FIND identifier whole (up to 1 MiB, base64): a peer allowed to query could make the node
hold some 14 GB for a collector that had stopped reading. And the queue-full warning was
said once per sink's life: the second outage lost messages without a line.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import ssl
import threading
import time
import tracemalloc
from collections.abc import Iterator

import pytest

from dicomtls.audit import SyslogTLSSink, application_activity
from dicomtls.audit.messages import query

from .rsyslog import AuditPKI
from .test_syslog import LOCAL, PEER, wait_until

MIB = 1 << 20
MAX_QUEUE_BYTES = 64 * MIB  # dicomtls.audit.transport.MAX_QUEUE_BYTES


class Collector:
    """A TLS syslog collector on a real socket; ``reading`` says whether it reads at all."""

    def __init__(self, pki: AuditPKI, port: int = 0, *, reading: bool) -> None:
        self.context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.context.load_cert_chain(pki.server_cert, pki.server_key)
        self.listener = socket.create_server(("127.0.0.1", port))
        self.port = self.listener.getsockname()[1]
        self.reading = reading
        self.received = 0
        self.connections: list[socket.socket] = []
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        with contextlib.suppress(OSError):
            while True:
                raw, _ = self.listener.accept()
                tls = self.context.wrap_socket(raw, server_side=True)
                self.connections.append(tls)
                if self.reading:
                    threading.Thread(target=self._read, args=(tls,), daemon=True).start()

    def _read(self, tls: ssl.SSLSocket) -> None:
        with contextlib.suppress(OSError):
            while data := tls.recv(65536):
                self.received += len(data)

    def close(self) -> None:
        """Stop listening and end every connection (shutdown first: a thread blocked in
        ``accept`` or ``recv`` would otherwise keep the socket open)."""
        for sock in [self.listener, *self.connections]:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()
        self._thread.join(timeout=5)


@pytest.fixture
def stalled(audit_pki: AuditPKI) -> Iterator[Collector]:
    collector = Collector(audit_pki, reading=False)
    yield collector
    collector.close()


def sink_to(port: int, pki: AuditPKI, **options: object) -> SyslogTLSSink:
    return SyslogTLSSink(
        "127.0.0.1",
        port,
        certificate=pki.client_cert,
        private_key=pki.client_key,
        ca_file=pki.ca,
        **options,  # type: ignore[arg-type]
    )


def test_a_collector_that_stops_reading_costs_at_most_the_queue_bound_in_bytes(
    stalled: Collector, audit_pki: AuditPKI, caplog: pytest.LogCaptureFixture
) -> None:
    big = query(
        requestor=PEER,
        responder=LOCAL,
        sop_class_uid="1.2.840.10008.5.1.4.1.2.2.1",
        query=b"\x10\x00\x10\x00" + b"A" * MIB,  # a C-FIND identifier at the node's 1 MiB bound
        source_id="node-a",
    )
    sink = sink_to(stalled.port, audit_pki, backoff=(10.0, 10.0))
    tracemalloc.start()
    try:
        with caplog.at_level(logging.WARNING, logger="dicomtls.audit"):
            started = time.monotonic()
            for _ in range(150):  # 200 MiB of frames
                sink.send(big)
            sending = time.monotonic() - started
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
        sink.close(timeout=0.2)
    assert sending < 5  # never waits for the collector (its sendall times out after 5 s)
    assert peak < MAX_QUEUE_BYTES + 16 * MIB, peak // MIB
    assert sink.dropped > 100
    assert [r.getMessage() for r in caplog.records if "queue full" in r.getMessage()] == [
        f"audit sink tls://127.0.0.1:{stalled.port}: queue full (10000 messages, 64 MiB), "
        "dropping messages (counted in .dropped)"
    ]


def test_each_time_the_queue_fills_again_after_draining_the_loss_is_said_again(
    audit_pki: AuditPKI, caplog: pytest.LogCaptureFixture
) -> None:
    first = Collector(audit_pki, reading=True)
    port = first.port
    first.close()  # nothing listens now: the sink retries the first message, the rest queue
    sink = sink_to(port, audit_pki, max_queue=3, backoff=(0.05, 0.1))
    message = application_activity(started=True, application=LOCAL, source_id="x")
    with caplog.at_level(logging.WARNING, logger="dicomtls.audit"):
        sink.send(message)
        assert wait_until(lambda: sink.failures >= 1)
        for _ in range(10):
            sink.send(message)
        back = Collector(audit_pki, port, reading=True)
        try:
            assert wait_until(lambda: sink.sent == 4 and sink.pending == 0)
            sink.send(message)  # delivered: the queue has room again
            assert wait_until(lambda: sink.sent == 5)
        finally:
            back.close()  # gone again
        failures = sink.failures
        sink.send(message)
        assert wait_until(lambda: sink.failures > failures)
        for _ in range(10):
            sink.send(message)
    sink.close(timeout=0.2)
    full = [r for r in caplog.records if "queue full" in r.getMessage()]
    assert len(full) == 2, [r.getMessage() for r in caplog.records]
