"""The transport pieces that need no collector: framing, file sink, fan-out, sink specs."""

from __future__ import annotations

import datetime as dt
import logging
from pathlib import Path

import pytest
from lxml import etree

from dicomtls.audit import (
    AuditMessage,
    AuditTrail,
    FileSink,
    Node,
    SyslogTLSSink,
    SyslogUDPSink,
    application_activity,
    node_authentication_failure,
    parse_sink,
    syslog_frame,
)

from .rsyslog import AuditPKI

NODE = Node("DICOMTLS", "127.0.0.1", process_id=1)


def message(source_id: str = "node-a") -> AuditMessage:
    return application_activity(started=True, application=NODE, source_id=source_id)


def test_syslog_frame_is_rfc5424_with_bom() -> None:
    msg = message()
    when = dt.datetime(2026, 11, 25, 15, 53, 17, 123456, tzinfo=dt.timezone(dt.timedelta(hours=1)))
    frame = syslog_frame(msg, hostname="pacs 1", procid="77", timestamp=when)
    header, bom_and_xml = frame.split(b" - ", 1)
    assert header == b"<85>1 2026-11-25T14:53:17.123Z pacs_1 dicomtls 77 DICOM+RFC3881"
    assert bom_and_xml == b"\xef\xbb\xbf" + msg.xml


def test_syslog_frame_nil_values() -> None:
    frame = syslog_frame(message(), hostname="", app_name="")
    assert frame.split(b" ")[2:7] == [b"-", b"-", b"-", b"DICOM+RFC3881", b"-"]


def test_file_sink_writes_one_valid_message_per_line(tmp_path: Path, schema: etree.RelaxNG) -> None:
    path = tmp_path / "deep" / "er" / "audit.log"  # parent directories are created
    sink = FileSink(path)
    sent = [
        message("one"),
        node_authentication_failure(
            local=NODE, peer=Node("X", "10.0.0.9"), reason="multi\nline", source_id="two"
        ),
        message("three"),
    ]
    for item in sent:
        sink.send(item)
        # flushed per message: the line is there before close
        assert path.read_bytes().endswith(item.xml + b"\n")
    sink.close()
    lines = path.read_bytes().splitlines()
    assert lines == [item.xml for item in sent]
    for line in lines:
        assert schema.validate(etree.fromstring(line)), schema.error_log
    assert (sink.sent, sink.dropped) == (3, 0)


def test_file_sink_appends_across_instances(tmp_path: Path) -> None:
    path = tmp_path / "audit.log"
    for name in ("a", "b"):
        sink = FileSink(path)
        sink.send(message(name))
        sink.close()
    assert len(path.read_bytes().splitlines()) == 2


def test_file_sink_that_cannot_write_counts_and_does_not_raise(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    sink = FileSink(blocker / "audit.log")
    with caplog.at_level(logging.WARNING, logger="dicomtls.audit"):
        sink.send(message())
        sink.send(message())
    assert (sink.sent, sink.dropped) == (0, 2)
    assert sum("not writable" in r.getMessage() for r in caplog.records) == 1


class Exploding:
    def send(self, message: AuditMessage) -> None:
        raise RuntimeError("broken sink")

    def close(self) -> None:
        raise RuntimeError("broken close")


def test_audit_trail_fans_out_and_survives_a_broken_sink(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    first, second = FileSink(tmp_path / "1.log"), FileSink(tmp_path / "2.log")
    trail = AuditTrail([first, Exploding(), second])
    recorded = message("fan")
    with caplog.at_level(logging.DEBUG, logger="dicomtls.audit"):
        trail.record(recorded)
    trail.close()
    for sink in (first, second):  # the broken sink in between did not stop the second
        assert sink.path.read_bytes() == recorded.xml + b"\n"
    debug = [r for r in caplog.records if r.levelno == logging.DEBUG]
    assert any("Application Activity" in r.getMessage() for r in debug)
    assert trail.dropped == 0


def test_audit_trail_dropped_sums_its_sinks(tmp_path: Path) -> None:
    blocked = tmp_path / "f"
    blocked.write_text("")
    trail = AuditTrail([FileSink(blocked / "x.log"), FileSink(tmp_path / "ok.log")])
    trail.record(message())
    trail.record(message())
    assert trail.dropped == 2
    trail.close()


def test_parse_sink_good_specs(tmp_path: Path, audit_pki: AuditPKI) -> None:
    file_sink = parse_sink(f"file:{tmp_path}/audit.log")
    assert isinstance(file_sink, FileSink) and file_sink.path == tmp_path / "audit.log"
    assert isinstance(parse_sink(f"file://{tmp_path}/a.log"), FileSink)

    udp = parse_sink("udp://127.0.0.1:5514")
    assert isinstance(udp, SyslogUDPSink) and (udp.host, udp.port) == ("127.0.0.1", 5514)
    udp.close()
    default_udp = parse_sink("udp://[::1]")
    assert isinstance(default_udp, SyslogUDPSink)
    assert (default_udp.host, default_udp.port) == ("::1", 514)
    default_udp.close()

    spec = (
        f"tls://audit.example.org?ca={audit_pki.ca}"
        f"&cert={audit_pki.client_cert}&key={audit_pki.client_key}"
    )
    tls = parse_sink(spec)
    assert isinstance(tls, SyslogTLSSink)
    assert (tls.host, tls.port, tls.server_hostname) == ("audit.example.org", 6514, tls.host)
    tls.close(timeout=0.1)
    named = parse_sink(f"tls://127.0.0.1:7000?ca={audit_pki.ca}&servername=collector.local")
    assert isinstance(named, SyslogTLSSink)
    assert (named.port, named.server_hostname) == (7000, "collector.local")
    named.close(timeout=0.1)


@pytest.mark.parametrize(
    ("spec", "why"),
    [
        ("", "expected file:PATH"),
        ("syslog.example.org", "expected file:PATH"),
        ("file:", "no file path"),
        ("http://host:80", "unknown scheme 'http'"),
        ("udp:host:514", "expected udp://HOST:PORT"),
        ("udp://:514", "no host"),
        ("udp://host:99999", "port is not a number"),
        ("udp://host:abc", "port is not a number"),
        ("udp://host:514?ca=x", "udp takes no options"),
        ("tls://host:6514", "tls needs ca=PATH"),
        ("tls://host?ca={ca}&cert={ca}", "cert=PATH and key=PATH together"),
        ("tls://host?ca=/nonexistent/ca.pem", "ca file /nonexistent/ca.pem not found"),
        ("tls://host?ca={ca}&verify=no", "unknown option(s) verify"),
        ("tls://host?ca={ca}&ca={ca}", "option ca must be given once"),
        ("tls://host?ca={ca}&cert={ca}&key={ca}", "cannot load TLS files"),
    ],
)
def test_parse_sink_bad_specs(spec: str, why: str, audit_pki: AuditPKI) -> None:
    spec = spec.format(ca=audit_pki.ca)
    with pytest.raises(ValueError) as caught:
        parse_sink(spec)
    text = str(caught.value)
    assert "\n" not in text
    assert text.startswith(f"audit sink {spec!r}: ")
    assert why in text
