"""Audit messages through a real rsyslogd: UDP (RFC 5426) and mutual TLS (RFC 5425)."""

from __future__ import annotations

import logging
import os
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import TypedDict, Unpack

import pytest
from lxml import etree

from dicomtls.audit import (
    AuditMessage,
    Node,
    PatientRef,
    StudyRef,
    SyslogTLSSink,
    SyslogUDPSink,
    application_activity,
    association_rejected,
    instances_transferred,
    node_authentication_failure,
    query,
)

from .rsyslog import AuditPKI, Received, Rsyslog, free_port, running_rsyslog

LOCAL = Node("DICOMTLS", "127.0.0.1", process_id=os.getpid())
PEER = Node("MODALITY", "ct1.example.org", user_name="CN=ct1")


def all_builders(source_id: str) -> list[AuditMessage]:
    """One message from every builder, all tagged with ``source_id`` so a test finds its own."""
    return [
        application_activity(started=True, application=LOCAL, source_id=source_id),
        application_activity(started=False, application=LOCAL, source_id=source_id),
        node_authentication_failure(
            local=LOCAL, peer=PEER, reason="unknown CA", source_id=source_id
        ),
        association_rejected(local=LOCAL, peer=PEER, reason="AE not allowed", source_id=source_id),
        instances_transferred(
            action="C",
            source=PEER,
            destination=LOCAL,
            requestor_is_source=True,
            studies=[StudyRef("1.2.3.4", {"1.2.840.10008.5.1.4.1.1.2": 12})],
            patient=PatientRef("PID-7", "Ünlü^Ayşe"),  # UTF-8 must survive the trip
            source_id=source_id,
        ),
        query(
            requestor=PEER,
            responder=LOCAL,
            sop_class_uid="1.2.840.10008.5.1.4.1.2.2.1",
            query=b"\x10\x00\x10\x00\x04\x00\x00\x00Doe*",
            source_id=source_id,
        ),
    ]


def tagged(source_id: str) -> Callable[[Received], bool]:
    return lambda r: f'AuditSourceID="{source_id}"' in r.msg


class SinkOptions(TypedDict, total=False):
    """What a test may change of the sink tls_sink makes (the others keep their default)."""

    certificate: Path | None
    private_key: Path | None
    server_hostname: str | None
    backoff: tuple[float, float]


def tls_sink(rsyslog: Rsyslog, pki: AuditPKI, **overrides: Unpack[SinkOptions]) -> SyslogTLSSink:
    options: SinkOptions = {"certificate": pki.client_cert, "private_key": pki.client_key}
    options.update(overrides)
    return SyslogTLSSink("127.0.0.1", rsyslog.tls_port, ca_file=pki.ca, **options)


def wait_until(condition: Callable[[], bool], timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


def check_delivered(
    rsyslog: Rsyslog, log: Path, messages: list[AuditMessage], source_id: str, schema: etree.RelaxNG
) -> None:
    received = rsyslog.wait_for(log, tagged(source_id), len(messages))
    assert len(received) == len(messages), rsyslog.stderr_text()
    for got in received:
        # The RFC 5424 header as rsyslog parsed it: PRI 85 = authpriv(10) * 8 + notice(5).
        assert (got.pri, got.facility, got.severity) == ("85", "10", "5")
        assert got.app_name == "dicomtls"
        assert got.msgid == "DICOM+RFC3881"
        assert got.procid == str(os.getpid())
        assert got.msg.startswith("\ufeff")  # RFC 5424 BOM before the UTF-8 MSG
        document = etree.fromstring(got.payload.encode("utf-8"))
        assert schema.validate(document), schema.error_log
    # Byte for byte what we built, in the order we sent it.
    assert [r.payload.encode("utf-8") for r in received] == [m.xml for m in messages]


def test_every_message_over_tls_arrives_valid(
    rsyslog: Rsyslog, audit_pki: AuditPKI, schema: etree.RelaxNG
) -> None:
    source_id = f"tls-{uuid.uuid4().hex}"
    messages = all_builders(source_id)
    sink = tls_sink(rsyslog, audit_pki)
    for message in messages:
        sink.send(message)
    sink.close()
    assert (sink.sent, sink.dropped) == (len(messages), 0)
    check_delivered(rsyslog, rsyslog.tls_log, messages, source_id, schema)


def test_one_tls_connection_carries_messages_sent_apart(
    rsyslog: Rsyslog, audit_pki: AuditPKI, caplog: pytest.LogCaptureFixture
) -> None:
    """TLS 1.3 session tickets make the socket readable after the handshake; that is not a
    hang-up, so the sink must not reconnect for every message of a quiet node."""
    source_id = f"apart-{uuid.uuid4().hex}"
    messages = all_builders(source_id)
    with caplog.at_level(logging.INFO, logger="dicomtls.audit"):
        sink = tls_sink(rsyslog, audit_pki)
        for count, message in enumerate(messages, 1):
            sink.send(message)
            assert len(rsyslog.wait_for(rsyslog.tls_log, tagged(source_id), count)) == count
        sink.close()
    connects = [r for r in caplog.records if "connected" in r.getMessage()]
    assert len(connects) == 1, [r.getMessage() for r in connects]
    assert (sink.sent, sink.dropped) == (len(messages), 0)


def test_every_message_over_udp_arrives_valid(rsyslog: Rsyslog, schema: etree.RelaxNG) -> None:
    source_id = f"udp-{uuid.uuid4().hex}"
    messages = all_builders(source_id)
    sink = SyslogUDPSink("127.0.0.1", rsyslog.udp_port)
    for message in messages:
        sink.send(message)
    sink.close()
    assert (sink.sent, sink.dropped) == (len(messages), 0)
    check_delivered(rsyslog, rsyslog.udp_log, messages, source_id, schema)


@pytest.mark.parametrize("client", ["no-certificate", "untrusted-certificate"])
def test_collector_refuses_clients_it_cannot_authenticate(
    client: str, rsyslog: Rsyslog, audit_pki: AuditPKI
) -> None:
    refused_id = f"refused-{uuid.uuid4().hex}"
    errors_before = len(rsyslog.stderr_text())
    if client == "no-certificate":
        bad = tls_sink(rsyslog, audit_pki, certificate=None, private_key=None)
    else:
        bad = tls_sink(
            rsyslog,
            audit_pki,
            certificate=audit_pki.stranger_cert,
            private_key=audit_pki.stranger_key,
        )
    bad.send(application_activity(started=True, application=LOCAL, source_id=refused_id))
    # Wait until the refused sink has really tried (handshake done or failed)...
    assert wait_until(lambda: bad.sent + bad.failures >= 1)
    bad.close(timeout=1)
    # rsyslogd says why it refused (its own diagnostics, on stderr in the foreground).
    why = {
        "no-certificate": "peer did not return a certificate",
        "untrusted-certificate": "certificate verify failed",
    }[client]
    assert wait_until(lambda: why in rsyslog.stderr_text()[errors_before:])
    # ...then prove the collector is up and logging by a good client's message.
    good_id = f"accepted-{uuid.uuid4().hex}"
    good = tls_sink(rsyslog, audit_pki)
    good.send(application_activity(started=True, application=LOCAL, source_id=good_id))
    good.close()
    assert len(rsyslog.wait_for(rsyslog.tls_log, tagged(good_id), 1)) == 1
    assert rsyslog.received(rsyslog.tls_log) and not [
        r for r in rsyslog.received(rsyslog.tls_log) if tagged(refused_id)(r)
    ]


def test_tls_sink_verifies_the_collector_name(rsyslog: Rsyslog, audit_pki: AuditPKI) -> None:
    source_id = f"wrong-name-{uuid.uuid4().hex}"
    sink = tls_sink(rsyslog, audit_pki, server_hostname="audit.example.org", backoff=(0.05, 0.1))
    sink.send(application_activity(started=True, application=LOCAL, source_id=source_id))
    assert wait_until(lambda: sink.failures >= 1)  # the collector's cert is for localhost
    sink.close(timeout=0.2)
    assert (sink.sent, sink.dropped) == (0, 1)


def test_collector_down_neither_blocks_nor_raises_and_delivers_when_up(
    tmp_path: Path, audit_pki: AuditPKI, schema: etree.RelaxNG
) -> None:
    port = free_port()  # nothing listens here yet
    sink = SyslogTLSSink(
        "127.0.0.1",
        port,
        certificate=audit_pki.client_cert,
        private_key=audit_pki.client_key,
        ca_file=audit_pki.ca,
        backoff=(0.05, 0.2),
    )
    source_id = f"late-{uuid.uuid4().hex}"
    messages = all_builders(source_id)[:2]
    started = time.monotonic()
    for message in messages:
        sink.send(message)
    assert time.monotonic() - started < 0.5  # queued, not sent in our thread
    assert wait_until(lambda: sink.failures >= 2)  # it is retrying
    assert sink.sent == 0
    with running_rsyslog(tmp_path, audit_pki, tls_port=port) as late:
        received = late.wait_for(late.tls_log, tagged(source_id), len(messages))
        sink.close()
        assert [r.payload.encode() for r in received] == [m.xml for m in messages]
    assert (sink.sent, sink.dropped) == (2, 0)


def test_close_is_bounded_when_the_collector_stays_down(audit_pki: AuditPKI) -> None:
    sink = SyslogTLSSink(
        "127.0.0.1",
        free_port(),
        certificate=audit_pki.client_cert,
        private_key=audit_pki.client_key,
        ca_file=audit_pki.ca,
        backoff=(10.0, 10.0),  # a long backoff wait that close() must cut short
    )
    sink.send(application_activity(started=True, application=LOCAL, source_id="x"))
    sink.send(application_activity(started=True, application=LOCAL, source_id="y"))
    assert wait_until(lambda: sink.failures >= 1)
    started = time.monotonic()
    sink.close(timeout=0.3)
    assert time.monotonic() - started < 2.0
    assert (sink.sent, sink.dropped) == (0, 2)
    sink.send(application_activity(started=True, application=LOCAL, source_id="z"))
    assert sink.dropped == 3  # after close: counted, not raised


def test_full_queue_drops_counts_and_warns_once(
    audit_pki: AuditPKI, caplog: pytest.LogCaptureFixture
) -> None:
    sink = SyslogTLSSink(
        "127.0.0.1",
        free_port(),
        certificate=audit_pki.client_cert,
        private_key=audit_pki.client_key,
        ca_file=audit_pki.ca,
        max_queue=3,
        backoff=(10.0, 10.0),
    )
    message = application_activity(started=True, application=LOCAL, source_id="x")
    sink.send(message)
    assert wait_until(lambda: sink.failures >= 1)  # the worker holds the first one
    with caplog.at_level(logging.WARNING, logger="dicomtls.audit"):
        for _ in range(10):
            sink.send(message)
    assert sink.pending == 3
    assert sink.dropped == 7
    assert sum("queue full" in r.getMessage() for r in caplog.records) == 1
    sink.close(timeout=0.2)
    assert sink.dropped == 11  # the held one and the three queued are lost at close


def test_udp_send_failure_is_counted_not_raised() -> None:
    sink = SyslogUDPSink("127.0.0.1", 0)  # port 0: the kernel refuses to send there
    sink.send(application_activity(started=True, application=LOCAL, source_id="x"))
    assert wait_until(lambda: sink.dropped == 1)
    sink.close()
    assert (sink.sent, sink.failures) == (0, 1)
