"""The Prometheus endpoint over real HTTP: exact values, scrape-time expiry, isolation, port handling."""

from __future__ import annotations

import datetime
import math
import socket
import urllib.request
from collections.abc import Iterator

import pytest
from prometheus_client.parser import text_string_to_metric_families

from dicomtls.node.metrics import MetricsServer, NodeMetrics, start_metrics_server

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape(server: MetricsServer) -> Samples:
    """Fetch /metrics and index every sample by (name, labels)."""
    url = f"http://127.0.0.1:{server.port}/metrics"
    with urllib.request.urlopen(url, timeout=5) as response:
        assert response.status == 200
        text = response.read().decode()
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples[(name, frozenset(labels.items()))]


def names(samples: Samples) -> set[str]:
    return {name for name, _ in samples}


@pytest.fixture
def metrics() -> NodeMetrics:
    return NodeMetrics()


@pytest.fixture
def server(metrics: NodeMetrics) -> Iterator[MetricsServer]:
    srv = start_metrics_server(metrics, 0)
    yield srv
    srv.close()


def test_port_zero_reports_real_port(server: MetricsServer) -> None:
    assert server.port > 0
    assert scrape(server)  # something answers on the reported port


def test_counts_before_any_event_are_zero(server: MetricsServer) -> None:
    s = scrape(server)
    assert value(s, "dicomtls_associations_total", result="accepted", reason="") == 0
    assert value(s, "dicomtls_objects_stored_total", result="success") == 0
    assert value(s, "dicomtls_objects_stored_total", result="failure") == 0
    assert value(s, "dicomtls_certificate_reloads_total", result="failure") == 0
    assert value(s, "dicomtls_bytes_stored_total") == 0
    assert value(s, "dicomtls_store_seconds_count") == 0
    assert value(s, "dicomtls_tls_handshake_seconds_count") == 0
    assert "dicomtls_certificate_expiry_days" not in names(s)


def test_association_counters(metrics: NodeMetrics, server: MetricsServer) -> None:
    for _ in range(3):
        metrics.association_accepted("STORESCU")
    metrics.association_rejected("called-ae-not-recognised")
    metrics.association_rejected("called-ae-not-recognised")
    metrics.association_rejected("calling-ae-not-recognised")
    metrics.association_aborted("peer-abort")
    s = scrape(server)
    assert value(s, "dicomtls_associations_total", result="accepted", reason="") == 3
    total = "dicomtls_associations_total"
    assert value(s, total, result="rejected", reason="called-ae-not-recognised") == 2
    assert value(s, total, result="rejected", reason="calling-ae-not-recognised") == 1
    assert value(s, "dicomtls_associations_total", result="aborted", reason="peer-abort") == 1
    # The peer-chosen AE title must not become a label value.
    assert all("STORESCU" not in dict(labels).values() for _, labels in s)


def test_handshake_metrics(metrics: NodeMetrics, server: MetricsServer) -> None:
    metrics.handshake_failed("CERT_REVOKED")
    metrics.handshake_failed("CERT_REVOKED")
    metrics.handshake_failed("CERTIFICATE_REQUIRED")
    metrics.handshake_succeeded(0.004)
    metrics.handshake_succeeded(0.2)
    metrics.handshake_succeeded(3.0)
    s = scrape(server)
    assert value(s, "dicomtls_tls_handshake_failures_total", code="CERT_REVOKED") == 2
    assert value(s, "dicomtls_tls_handshake_failures_total", code="CERTIFICATE_REQUIRED") == 1
    assert value(s, "dicomtls_tls_handshake_seconds_count") == 3
    assert value(s, "dicomtls_tls_handshake_seconds_sum") == pytest.approx(3.204)
    # Buckets are cumulative and resolve milliseconds as well as seconds.
    assert value(s, "dicomtls_tls_handshake_seconds_bucket", le="0.001") == 0
    assert value(s, "dicomtls_tls_handshake_seconds_bucket", le="0.005") == 1
    assert value(s, "dicomtls_tls_handshake_seconds_bucket", le="0.25") == 2
    assert value(s, "dicomtls_tls_handshake_seconds_bucket", le="5.0") == 3
    assert value(s, "dicomtls_tls_handshake_seconds_bucket", le="+Inf") == 3


def test_store_metrics(metrics: NodeMetrics, server: MetricsServer) -> None:
    metrics.object_stored(1000, 0.0005, ok=True)
    metrics.object_stored(250_000, 0.5, ok=True)
    metrics.object_stored(999_999, 45.0, ok=False)  # failed data was not kept: no bytes
    s = scrape(server)
    assert value(s, "dicomtls_objects_stored_total", result="success") == 2
    assert value(s, "dicomtls_objects_stored_total", result="failure") == 1
    assert value(s, "dicomtls_bytes_stored_total") == 251_000
    assert value(s, "dicomtls_store_seconds_count") == 3
    assert value(s, "dicomtls_store_seconds_sum") == pytest.approx(45.5005)
    assert value(s, "dicomtls_store_seconds_bucket", le="0.001") == 1
    assert value(s, "dicomtls_store_seconds_bucket", le="0.5") == 2
    assert value(s, "dicomtls_store_seconds_bucket", le="30.0") == 2
    assert value(s, "dicomtls_store_seconds_bucket", le="60.0") == 3
    assert value(s, "dicomtls_store_seconds_bucket", le="+Inf") == 3


def test_certificate_reloads(metrics: NodeMetrics, server: MetricsServer) -> None:
    metrics.certificate_reload(True)
    metrics.certificate_reload(True)
    metrics.certificate_reload(False)
    s = scrape(server)
    assert value(s, "dicomtls_certificate_reloads_total", result="success") == 2
    assert value(s, "dicomtls_certificate_reloads_total", result="failure") == 1


def test_certificate_expiry_is_computed_at_scrape_time(
    metrics: NodeMetrics, server: MetricsServer
) -> None:
    not_after = datetime.datetime.now(datetime.UTC) + datetime.timedelta(days=10)
    metrics.set_certificate(not_after)  # set once, never updated
    first = value(scrape(server), "dicomtls_certificate_expiry_days")
    second = value(scrape(server), "dicomtls_certificate_expiry_days")
    assert 9.9 <= first <= 10.0
    # Consistent between scrapes, and falling (or equal at clock resolution), never rising.
    assert second <= first
    assert first - second < 1 / 86400 * 5  # less than 5 s of difference
    # Computed from the clock at scrape time, not frozen at set time: the value equals the
    # remaining time as of now, within the scrape's duration.
    expected = (not_after - datetime.datetime.now(datetime.UTC)).total_seconds() / 86400
    third = value(scrape(server), "dicomtls_certificate_expiry_days")
    assert third == pytest.approx(expected, abs=5 / 86400)


def test_certificate_expiry_falls_without_updates(
    metrics: NodeMetrics, server: MetricsServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Clock moved forward a day between scrapes: the gauge follows without set_certificate."""
    import dicomtls.node.metrics as module

    now = datetime.datetime.now(datetime.UTC)
    monkeypatch.setattr(module, "_utcnow", lambda: now)
    metrics.set_certificate(now + datetime.timedelta(days=10))
    assert value(scrape(server), "dicomtls_certificate_expiry_days") == 10
    monkeypatch.setattr(module, "_utcnow", lambda: now + datetime.timedelta(days=1, hours=12))
    assert value(scrape(server), "dicomtls_certificate_expiry_days") == 8.5


def test_certificate_expiry_warning_turns_on_under_30_days(
    metrics: NodeMetrics, server: MetricsServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    import dicomtls.node.metrics as module

    now = datetime.datetime.now(datetime.UTC)
    monkeypatch.setattr(module, "_utcnow", lambda: now)
    metrics.set_certificate(now + datetime.timedelta(days=31))
    assert value(scrape(server), "dicomtls_certificate_expiry_warning") == 0
    monkeypatch.setattr(module, "_utcnow", lambda: now + datetime.timedelta(days=1, seconds=1))
    assert value(scrape(server), "dicomtls_certificate_expiry_warning") == 1


def test_certificate_expiry_naive_is_utc_and_expired_is_negative(
    metrics: NodeMetrics, server: MetricsServer
) -> None:
    aware = datetime.datetime.now(datetime.UTC) - datetime.timedelta(days=2)
    naive_utc = aware.replace(tzinfo=None)  # as cryptography's legacy not_valid_after
    metrics.set_certificate(naive_utc)
    assert value(scrape(server), "dicomtls_certificate_expiry_days") == pytest.approx(-2, abs=0.01)


def test_certificate_none_removes_gauge(metrics: NodeMetrics, server: MetricsServer) -> None:
    metrics.set_certificate(datetime.datetime.now(datetime.UTC) + datetime.timedelta(days=30))
    assert "dicomtls_certificate_expiry_days" in names(scrape(server))
    metrics.set_certificate(None)
    s = scrape(server)
    expiry = [v for (name, _), v in s.items() if name == "dicomtls_certificate_expiry_days"]
    assert expiry == [] or all(math.isnan(v) for v in expiry)


def test_long_label_values_are_truncated(metrics: NodeMetrics, server: MetricsServer) -> None:
    metrics.association_rejected("x" * 500)
    metrics.handshake_failed("y" * 65)
    s = scrape(server)
    assert value(s, "dicomtls_associations_total", result="rejected", reason="x" * 64) == 1
    assert value(s, "dicomtls_tls_handshake_failures_total", code="y" * 64) == 1


def test_two_nodes_in_one_process_do_not_clash() -> None:
    a, b = NodeMetrics(), NodeMetrics()  # would raise Duplicated timeseries on a shared registry
    assert a.registry is not b.registry
    a.association_accepted("A")
    a.object_stored(10, 0.01, ok=True)
    b.object_stored(20, 0.01, ok=True)
    b.object_stored(30, 0.01, ok=True)
    a.set_certificate(datetime.datetime.now(datetime.UTC) + datetime.timedelta(days=5))
    with start_metrics_server(a, 0) as sa, start_metrics_server(b, 0) as sb:
        assert sa.port != sb.port
        sa_samples, sb_samples = scrape(sa), scrape(sb)
    assert value(sa_samples, "dicomtls_associations_total", result="accepted", reason="") == 1
    assert value(sb_samples, "dicomtls_associations_total", result="accepted", reason="") == 0
    assert value(sa_samples, "dicomtls_bytes_stored_total") == 10
    assert value(sb_samples, "dicomtls_bytes_stored_total") == 50
    assert "dicomtls_certificate_expiry_days" in names(sa_samples)
    assert "dicomtls_certificate_expiry_days" not in names(sb_samples)


def test_shared_registry_is_refused() -> None:
    """Two nodes on one registry would silently merge; prometheus_client refuses instead."""
    first = NodeMetrics()
    with pytest.raises(ValueError, match="Duplicated timeseries"):
        NodeMetrics(registry=first.registry)


def test_close_frees_the_port(metrics: NodeMetrics) -> None:
    srv = start_metrics_server(metrics, 0)
    port = srv.port
    scrape(srv)  # a served connection must not keep the port busy either
    srv.close()
    srv.close()  # idempotent
    with pytest.raises(OSError):
        urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2)
    again = start_metrics_server(metrics, port)
    try:
        assert again.port == port
        assert scrape(again)
    finally:
        again.close()


def test_port_in_use_raises_oserror_naming_host_and_port(server: MetricsServer) -> None:
    with pytest.raises(OSError, match=rf"127\.0\.0\.1:{server.port}\b") as info:
        start_metrics_server(NodeMetrics(), server.port)
    assert info.value.errno is not None  # callers can still test for EADDRINUSE


def test_port_held_by_another_program(metrics: NodeMetrics) -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        with pytest.raises(OSError, match=f"cannot serve metrics on 127.0.0.1:{port}"):
            start_metrics_server(metrics, port)


def test_a_health_check_that_hangs_is_asked_once_and_healthz_says_503_in_time(
    metrics: NodeMetrics, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An index or bucket that never answers: HAProxy checks every 2 s, and each check used
    to start another health check in a thread of its own, all of them hanging."""
    import concurrent.futures
    import threading
    import urllib.error

    import dicomtls.node.metrics_http as endpoint

    monkeypatch.setattr(endpoint, "HEALTH_SECONDS", 0.5)
    release = threading.Event()
    calls: list[int] = []

    def hanging() -> str | None:
        calls.append(1)
        release.wait(30)
        return None

    def check(_: int) -> tuple[int, str]:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{srv.port}/healthz", timeout=10)
        except urllib.error.HTTPError as answer:
            return answer.code, answer.read().decode()
        raise AssertionError("200 from a check that has not answered")

    with start_metrics_server(metrics, 0, health=hanging) as srv:
        try:
            with concurrent.futures.ThreadPoolExecutor(5) as pool:
                answers = list(pool.map(check, range(5)))
        finally:
            release.set()
    assert answers == [(503, "unavailable: health check took longer than 0.5 s\n")] * 5
    assert len(calls) == 1
