"""An optional Prometheus endpoint for a node: associations, TLS handshakes, stores, certificate expiry.

Each :class:`NodeMetrics` keeps its own :class:`~prometheus_client.CollectorRegistry`
(never the global one), so several nodes in one process (tests, a node plus its
move destination) do not clash. Label values come from fixed vocabularies in the
caller; they are still truncated to 64 characters so a bug can never explode the
number of series. Peer-supplied values (calling AE titles) are never labels.
"""

from __future__ import annotations

import datetime
import functools
from collections.abc import Callable, Iterable

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily, Metric

from dicomtls.node.metrics_http import Health, MetricsServer, serve

__all__ = ["Health", "MetricsServer", "NodeMetrics", "start_metrics_server"]

MAX_LABEL_LENGTH = 64

# TLS handshakes on a LAN take milliseconds; CRL fetches or slow peers can take seconds.
HANDSHAKE_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
# A small SR arrives in a millisecond, a large multiframe over a WAN in tens of seconds.
STORE_BUCKETS = (
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
    60.0,
)

_SECONDS_PER_DAY = 86400.0


def _utcnow() -> datetime.datetime:
    """The clock read at each scrape (a seam for tests that move time forward)."""
    return datetime.datetime.now(datetime.UTC)


def _label(value: str) -> str:
    """Bound a label value: one series per distinct value, so length (and count) must be finite."""
    return value[:MAX_LABEL_LENGTH]


class _ScrapeTimeGauges:
    """Unlabelled gauges computed when scraped (:attr:`GAUGES`: name and help of each); a
    subclass says their values, or None while there are none (the series are absent then)."""

    GAUGES: tuple[tuple[str, str], ...] = ()

    def values(self) -> tuple[float, ...] | None:
        raise NotImplementedError

    def describe(self) -> Iterable[Metric]:
        # Lets the registry detect name clashes even while there are no values.
        return [GaugeMetricFamily(name, help_text) for name, help_text in self.GAUGES]

    def collect(self) -> Iterable[Metric]:
        values = self.values()
        if values is None:
            return []
        families = []
        for (name, help_text), value in zip(self.GAUGES, values, strict=True):
            family = GaugeMetricFamily(name, help_text)
            family.add_metric([], value)
            families.append(family)
        return families


class _CertificateExpiryCollector(_ScrapeTimeGauges):
    """Days until the node's own certificate expires, computed at scrape time.

    Computed on each scrape rather than stored, so the value keeps falling between
    reloads and an alert like ``dicomtls_certificate_expiry_days < 14`` fires on time.
    With no certificate (``--no-tls``) the series is absent, not a misleading number.
    """

    NAME = "dicomtls_certificate_expiry_days"
    HELP = "Days until the node's own TLS certificate expires (negative once expired)."

    def __init__(self) -> None:
        self._not_after: datetime.datetime | None = None

    def set(self, not_after: datetime.datetime | None) -> None:
        if not_after is not None and not_after.tzinfo is None:
            # cryptography's legacy not_valid_after is naive UTC.
            not_after = not_after.replace(tzinfo=datetime.UTC)
        self._not_after = not_after  # one reference assignment: safe against a concurrent scrape

    WARNING = "dicomtls_certificate_expiry_warning"
    WARNING_HELP = "1 while the node's own TLS certificate has under 30 days left (or has expired)."
    WARNING_DAYS = 30

    GAUGES = ((NAME, HELP), (WARNING, WARNING_HELP))

    def values(self) -> tuple[float, ...] | None:
        not_after = self._not_after
        if not_after is None:
            return None
        days = (not_after - _utcnow()).total_seconds() / _SECONDS_PER_DAY
        return days, float(days < self.WARNING_DAYS)


class _TrustExpiryCollector:
    """Days until each trusted CA expires and each CRL reaches its next update, at scrape time.

    Past a CRL's next update OpenSSL refuses every peer its CA issued: an alert on
    ``dicomtls_trust_expiry_days{kind="crl"} < 2`` catches a CRL that stopped being published.
    """

    NAME = "dicomtls_trust_expiry_days"
    HELP = (
        "Days until a trusted CA expires (kind=ca) or a CRL reaches its next update (kind=crl), "
        "by the CA's subject (a CRL: its issuer's); negative once past."
    )

    def __init__(self) -> None:
        self._ends: tuple[tuple[str, str, datetime.datetime], ...] = ()

    def set(self, ends: Iterable[tuple[str, str, datetime.datetime]]) -> None:
        self._ends = tuple(ends)  # one reference assignment: safe against a concurrent scrape

    def describe(self) -> Iterable[Metric]:
        return [GaugeMetricFamily(self.NAME, self.HELP, labels=["kind", "subject"])]

    def collect(self) -> Iterable[Metric]:
        family = GaugeMetricFamily(self.NAME, self.HELP, labels=["kind", "subject"])
        now = _utcnow()
        for kind, name, end in self._ends:
            family.add_metric([kind, _label(name)], (end - now).total_seconds() / _SECONDS_PER_DAY)
        return [family]


class _StoreRoomCollector(_ScrapeTimeGauges):
    """The store's disk at scrape time: its free bytes and the floor below which C-STOREs are
    refused (``min_free_space``), so an alert fires before senders are turned away."""

    GAUGES = (
        (
            "dicomtls_store_free_bytes",
            "Bytes free on the disk of the node's store (what an unprivileged writer may use).",
        ),
        (
            "dicomtls_store_floor_bytes",
            "The free-space floor of the node's store: below it C-STOREs are refused (A700H).",
        ),
    )

    def __init__(self) -> None:
        self._room: Callable[[], tuple[int, int]] | None = None

    def set(self, room: Callable[[], tuple[int, int]] | None) -> None:
        self._room = room  # one reference assignment: safe against a concurrent scrape

    def values(self) -> tuple[float, ...] | None:
        return None if self._room is None else tuple(map(float, self._room()))


class NodeMetrics:
    """A node's counters and histograms, in a registry of its own (several nodes in one process must not clash)."""

    registry: CollectorRegistry

    def __init__(self, *, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        counter = functools.partial(Counter, registry=self.registry)
        histogram = functools.partial(Histogram, registry=self.registry)
        self._associations = counter(
            "dicomtls_associations_total",
            "Association requests by outcome; reason is empty for accepted ones.",
            ["result", "reason"],
        )
        self._handshake_failures = counter(
            "dicomtls_tls_handshake_failures_total",
            "TLS handshakes that failed, by verification code or stage.",
            ["code"],
        )
        self._connections_refused = counter(
            "dicomtls_connections_refused_total",
            "Connections closed at once, before any TLS work, because too many TLS handshakes "
            "were pending (in total, or from the peer's address).",
            ["reason"],
        )
        self._handshake_seconds = histogram(
            "dicomtls_tls_handshake_seconds",
            "Duration of successful TLS handshakes.",
            buckets=HANDSHAKE_BUCKETS,
        )
        self._objects_stored = counter(
            "dicomtls_objects_stored_total", "C-STORE requests handled, by result.", ["result"]
        )
        self._bytes_stored = counter(
            "dicomtls_bytes_stored_total",
            "Bytes of objects stored durably (successful stores only).",
        )
        self._store_seconds = histogram(
            "dicomtls_store_seconds",
            "Duration of C-STORE handling, from first fragment to response.",
            buckets=STORE_BUCKETS,
        )
        self._certificate_reloads = counter(
            "dicomtls_certificate_reloads_total",
            "Reloads of the node's certificate and key, by result.",
            ["result"],
        )
        self._expiry = _CertificateExpiryCollector()
        self.registry.register(self._expiry)
        self._trust = _TrustExpiryCollector()
        self.registry.register(self._trust)
        self._room = _StoreRoomCollector()
        self.registry.register(self._room)
        # Pre-create the fixed-vocabulary series so they read 0, not absent, before the first
        # event: rate() and "no failures yet" alerts then work from the first scrape.
        self._associations.labels(result="accepted", reason="")
        for reason in ("pending-handshakes", "pending-handshakes-per-peer"):
            self._connections_refused.labels(reason=reason)
        for result in ("success", "failure"):
            self._objects_stored.labels(result=result)
            self._certificate_reloads.labels(result=result)

    def association_accepted(self, calling_ae: str) -> None:
        """Count an accepted association; the AE title is peer-chosen, so it is not a label."""
        del calling_ae  # part of the API for log/audit symmetry; unbounded, so never a label
        self._associations.labels(result="accepted", reason="").inc()

    def association_rejected(self, reason: str) -> None:
        self._associations.labels(result="rejected", reason=_label(reason)).inc()

    def association_aborted(self, reason: str) -> None:
        self._associations.labels(result="aborted", reason=_label(reason)).inc()

    def handshake_failed(self, code: str) -> None:
        self._handshake_failures.labels(code=_label(code)).inc()

    def connection_refused(self, reason: str) -> None:
        self._connections_refused.labels(reason=_label(reason)).inc()

    def handshake_succeeded(self, seconds: float) -> None:
        self._handshake_seconds.observe(max(0.0, seconds))

    def object_stored(self, size_bytes: int, seconds: float, ok: bool) -> None:
        """Count one C-STORE; bytes only for successes, since failed data was never kept."""
        self._objects_stored.labels(result="success" if ok else "failure").inc()
        if ok:
            self._bytes_stored.inc(max(0, size_bytes))
        self._store_seconds.observe(max(0.0, seconds))

    def set_certificate(self, not_after: datetime.datetime | None) -> None:
        """Set the expiry of the node's own certificate (naive means UTC); None removes the gauge."""
        self._expiry.set(not_after)

    def set_store_room(self, room: Callable[[], tuple[int, int]] | None) -> None:
        """Give the gauges of the store's disk: ``room()`` says (free bytes, floor) when asked."""
        self._room.set(room)

    def set_trust(self, ends: Iterable[tuple[str, str, datetime.datetime]]) -> None:
        """Set when each trusted CA (``ca``, subject) and CRL (``crl``, issuer) runs out."""
        self._trust.set(ends)

    def certificate_reload(self, ok: bool) -> None:
        self._certificate_reloads.labels(result="success" if ok else "failure").inc()


def start_metrics_server(
    metrics: NodeMetrics, port: int, host: str = "127.0.0.1", *, health: Health | None = None
) -> MetricsServer:
    """Serve ``metrics.registry`` at ``http://host:port/metrics`` and ``health`` at
    ``/healthz`` from a thread and event loop of their own (:mod:`~dicomtls.node.metrics_http`).

    Port 0 picks a free port; the real one is ``MetricsServer.port``. The default host is
    loopback because metrics reveal traffic patterns; bind wider deliberately (a balancer
    on another machine checks ``/healthz`` here).
    """
    return serve(metrics.registry, port, host, health)
