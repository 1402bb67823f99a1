"""A complete secure DICOM node: durable store, SQLite index, Query/Retrieve, one configuration.

``dicomtls serve`` is a thin shell around :func:`start_node`. The node accepts
C-ECHO, C-STORE (every storage SOP class, uncompressed transfer syntaxes), and
C-FIND / C-MOVE / C-GET over what it has stored, in the Patient Root and Study
Root models.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import socket
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from pydicom.dataset import Dataset

from dicomtls.audit.transport import AuditTrail
from dicomtls.dimse.status import Status
from dicomtls.dimse.transfer_syntax import STORAGE_TRANSFER_SYNTAXES
from dicomtls.logs import get_logger
from dicomtls.net.association import Association
from dicomtls.net.hooks import StatusError
from dicomtls.net.link import LinkEvents, ProxyProtocol
from dicomtls.net.qr_scu import QueryModel
from dicomtls.net.scp import DicomServer, Limits, Services, serve_dicom, storage_policy
from dicomtls.node.activity import ActivityLog, chained
from dicomtls.node.backends import Backends, IndexBackend, ObjectStore, open_backends
from dicomtls.node.index import INDEXED_KEYWORDS, Index
from dicomtls.node.metrics import MetricsServer, NodeMetrics, start_metrics_server
from dicomtls.node.policy import AccessPolicy
from dicomtls.node.reporting import Reporter
from dicomtls.node.room import DEFAULT_FLOOR, Floor, size_text
from dicomtls.node.storage import PRIVATE_FILE_MODE
from dicomtls.node.store_scp import DurableStoreHandler, OnStored
from dicomtls.pki.bundle import store_ca_key_folder
from dicomtls.pki.exposure import readable_ca_keys
from dicomtls.tls.expiry import ExpiryWatch, deadlines
from dicomtls.tls.flags import Side
from dicomtls.tls.reloader import ReloadingSettings
from dicomtls.tls.settings import TLSSettings, as_paths
from dicomtls.ul.acse import AcceptorPolicy

__all__ = ["CertificateWatch", "NodeConfig", "RunningNode", "start_node"]

log = get_logger("dicomtls.node")

DEFAULT_PORT = 2762  # the DICOM port for TLS (IANA "dicom-tls")
DEFAULT_AE_TITLE = "DICOMTLS"
#: /healthz asks the index and the store at most this often (seconds): a balancer checks
#: every node every few seconds, from each of its processes.
_HEALTH_CACHE = 1.0


@dataclass
class NodeConfig:
    store: Path = Path("dicom-store")
    host: str = "0.0.0.0"
    port: int = DEFAULT_PORT
    ae_title: str = DEFAULT_AE_TITLE
    tls: TLSSettings | None = None
    move_destinations: Mapping[str, tuple[str, int]] = field(default_factory=dict)
    move_tls: TLSSettings | None = None
    limits: Limits = field(default_factory=Limits)
    fsync: bool = True
    access: AccessPolicy | None = None
    """Who may associate and do what; None: the default policy (see ``node.policy``)."""
    audit: AuditTrail | None = None
    """Where audit messages go (PS3.15 A.5); None: no audit trail."""
    metrics: NodeMetrics | None = None
    metrics_port: int | None = None
    """Serve Prometheus metrics on this port (0: any free port); None: no endpoint."""
    metrics_host: str = "127.0.0.1"
    accept_any_called_ae: bool = False
    """Answer associations whatever AE title they call, not only ``ae_title``."""
    transfer_syntaxes: tuple[str, ...] = STORAGE_TRANSFER_SYNTAXES
    """What C-STORE is accepted in, most preferred first (stored as received)."""
    file_mode: int = PRIVATE_FILE_MODE
    """Mode of the objects, index and temporary files (folders get the matching search bits):
    0600, or 0640 to let the node's group read (a PACS group); never wider. A ``FileSink``
    in ``audit`` has its own ``mode`` (``dicomtls serve`` gives it this one)."""
    index: str | None = None
    """None: SQLite in the store folder. ``postgresql://...``: one index for several nodes."""
    objects: str | None = None
    """None: the store folder. ``s3://BUCKET?endpoint=URL``: a bucket for several nodes
    (needs the PostgreSQL index; credentials from the environment, as AWS tools read them)."""
    proxy: ProxyProtocol | None = None
    """Behind a TCP balancer: every connection starts with a PROXY v2 header from one of
    its trusted networks, and the client it names is the peer (see ``net/proxy.py``)."""
    janitor_interval: float | None = 600.0
    """With objects in S3: how often this node offers to run the janitor (one node at a time
    runs it); None: never (run ``dicomtls janitor`` from elsewhere)."""
    min_free_space: Floor = DEFAULT_FLOOR
    """The store folder's disk keeps this free (room for the index and the audit trail): a
    C-STORE that would go below it is refused with A700H (see ``node.room``)."""


class CertificateWatch:
    """The node's own TLS files: reloaded when they change, and watched for expiry."""

    def __init__(
        self,
        tls: TLSSettings | None,
        move_tls: TLSSettings | None,
        metrics: NodeMetrics | None,
    ) -> None:
        self.metrics = metrics
        self._timer: asyncio.TimerHandle | None = None
        self._expiry = ExpiryWatch()
        self.tls = (
            None if tls is None else ReloadingSettings(tls, Side.SERVER, on_reload=self._reloaded)
        )
        # The same files seen from our client side (C-MOVE): the server side does the talking.
        self.move_tls = (
            None if move_tls is None else ReloadingSettings(move_tls, Side.CLIENT, quiet=True)
        )
        if tls is not None:
            self._watch_expiry(tls)

    def reload(self) -> bool:
        """Reread certificate, key, CA and CRL files now (SIGHUP); False if they were refused."""
        results = [source.reload() for source in (self.tls, self.move_tls) if source is not None]
        return all(results)

    def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()

    def _reloaded(self, new: TLSSettings | None, error: str | None) -> None:
        if self.metrics is not None:
            self.metrics.certificate_reload(new is not None)
        if new is not None:
            self._watch_expiry(new)

    def _watch_expiry(self, settings: TLSSettings) -> None:
        """Warn of what expires (our certificate, a trusted CA, a CRL) as each becomes due.

        A timer set for the next moment a warning becomes due, not a periodic check: a
        node that runs for months says so on the day, without anyone restarting it.
        """
        self.close()
        identity = settings.identity
        found = deadlines(settings)  # read once: names printed, fingerprints taken
        if self.metrics is not None:
            expiry = None if identity is None else identity.certificate.not_valid_after_utc
            self.metrics.set_certificate(expiry)
            self.metrics.set_trust(
                (d.kind, d.name, d.expires_at) for d in found if d.kind != "ours"
            )
        for warning in self._expiry.check(found):
            log.warning("%s", warning)
        due = self._expiry.next_check(found)
        if due is None:
            return
        delay = (due - dt.datetime.now(dt.UTC)).total_seconds()
        loop = asyncio.get_running_loop()
        # asyncio's timers take any delay, but keep it within what selectors handle (~24 days).
        self._timer = loop.call_later(min(max(delay, 0.0), 2e6), self._watch_expiry, settings)


@dataclass
class RunningNode:
    config: NodeConfig
    server: DicomServer
    store: ObjectStore
    index: IndexBackend
    reporter: Reporter
    certificates: CertificateWatch
    metrics_server: MetricsServer | None = None
    draining: bool = False
    """Set by :meth:`drain`: /healthz says 503, so the balancer sends new clients elsewhere."""
    janitor: asyncio.Task[None] | None = None
    _health: tuple[float, str | None] = (0.0, None)

    @property
    def port(self) -> int:
        return self.server.port

    def drain(self) -> None:
        """Stop taking new clients through the balancer (SIGTERM, SIGUSR1): /healthz says 503;
        associations in progress go on, and so do new ones that still arrive."""
        if not self.draining and self.metrics_server is not None:  # else no /healthz to say it
            log.warning(
                "draining: /healthz now answers 503 so the balancer sends new clients elsewhere"
            )
        self.draining = True

    def health(self) -> str | None:
        """Why the node should get no new clients, or None (the /healthz answer). The index
        and the object store are asked at most once a second, from the HTTP thread."""
        if self.draining:
            return "draining"
        checked, problem = self._health
        now = time.monotonic()
        if now - checked < _HEALTH_CACHE:
            return problem
        problem = self._below_floor()
        for name, check in (("index", self.index.check), ("object store", self.store.check)):
            if problem is not None:
                break
            try:
                check()
            except Exception as exc:
                problem = f"{name} unreachable: {exc}"
        self._health = (now, problem)
        return problem

    def _below_floor(self) -> str | None:
        """Why the store takes no more objects, when its disk is below the free-space floor:
        every C-STORE would be refused, so the balancer should send new clients elsewhere."""
        room = getattr(self.store, "room", None)
        if room is None or not room.floor or (free := room.free()) >= room.floor:
            return None
        floor = size_text(room.floor)
        return f"store below its free-space floor: {size_text(free)} free, floor {floor}"

    def reload_tls(self) -> bool:
        """Reread certificate, key, CA and CRL files now (SIGHUP); False if they were refused."""
        return self.certificates.reload()

    async def close(self) -> None:
        if self.janitor is not None:
            self.janitor.cancel()
        await self.server.close()
        self.certificates.close()
        self.reporter.stopped()
        if self.metrics_server is not None:
            self.metrics_server.close()
        if self.config.audit is not None:
            self.config.audit.close()
        self.store.close()
        self.index.close()


class _QueryRetrieve:
    """C-FIND and C-MOVE/C-GET answered from the index, in the information model of the
    request's SOP class. An identifier the index will not run raises its
    :class:`~dicomtls.node.index.QueryError`, a StatusError the dispatcher answers with the
    PS3.4 status and one log line naming the peer."""

    def __init__(self, index: IndexBackend, store: ObjectStore) -> None:
        self.index = index
        self.store = store

    def find(
        self, association: Association, sop_class: str, identifier: Dataset
    ) -> Iterable[Dataset]:
        return self.index.find(identifier, _model(sop_class))

    def retrieve(
        self, association: Association, sop_class: str, identifier: Dataset
    ) -> Iterable[Path]:
        locate = self.store.locate  # an object stored through any node, read from its store
        return [locate(path) for path in self.index.files(identifier, _model(sop_class))]


def _model(sop_class: str) -> QueryModel:
    """The information model whose FIND, MOVE or GET SOP class this is."""
    for model in QueryModel:
        if sop_class in model.value:
            return model
    raise StatusError(Status.SOP_CLASS_NOT_SUPPORTED, f"{sop_class!r} is not a Q/R SOP class here")


async def start_node(config: NodeConfig, *, events: LinkEvents | None = None) -> RunningNode:
    """Open (or create) the store and its index, then listen."""
    backends = _open_backends(config)
    _warn_of_readable_ca_keys(config)
    metrics = config.metrics
    if metrics is None and config.metrics_port is not None:
        metrics = NodeMetrics()
    reporter = Reporter(
        config.ae_title,
        _host_name(config.host),
        backends.index,
        audit=config.audit,
        metrics=metrics,
    )
    certificates = CertificateWatch(config.tls, config.move_tls, metrics)
    access = config.access or AccessPolicy(destinations=frozenset(config.move_destinations))
    services = _services(config, backends, reporter, certificates, access)
    policy = _association_policy(config)
    _enough_files(
        config.limits.max_associations, policy.max_operations, config.limits.handshakes().total
    )
    server = await serve_dicom(
        config.host,
        config.port,
        certificates.tls,
        policy,
        services,
        limits=config.limits,
        events=reporter.link_events(events),
        proxy=config.proxy,
    )
    node = RunningNode(config, server, backends.store, backends.index, reporter, certificates)
    room = getattr(backends.store, "room", None)
    if metrics is not None and room is not None:
        metrics.set_store_room(lambda: (room.free(), room.floor))
    if config.proxy is not None:
        log.info("PROXY protocol v2 required, from %s", config.proxy.describe())
    node.janitor = _start_janitor(config, backends)
    if metrics is not None and config.metrics_port is not None:
        await _serve_metrics(node, metrics, config.metrics_port, backends)
    log.info("access policy: %s", access.describe())
    reporter.started()
    return node


def _open_backends(config: NodeConfig) -> Backends:
    """The index and the store, with what an earlier crash left behind cleaned up."""
    backends = open_backends(
        config.store,
        index=config.index,
        objects=config.objects,
        fsync=config.fsync,
        file_mode=config.file_mode,
        floor=config.min_free_space,
    )
    store, index = backends.store, backends.index
    leftovers = store.recover()
    if leftovers:
        log.warning("removed %d partial object(s) left by an earlier crash", leftovers)
    if config.index or config.objects:
        log.info("index: %s; objects: %s", index.describe_backend(), store.describe_backend())
    return backends


def _services(
    config: NodeConfig,
    backends: Backends,
    reporter: Reporter,
    certificates: CertificateWatch,
    access: AccessPolicy,
) -> Services:
    """What the node answers: C-STORE into the store, Q/R from the index, all reported."""
    store, index = backends.store, backends.index
    qr = _QueryRetrieve(index, store)
    keeper = DurableStoreHandler(
        store,
        _recorder(index),
        keep=INDEXED_KEYWORDS,
        identity_of=index.identity,  # a SOP instance held is replaced only by itself
        on_resent=reporter.resent,
        index_blocks=index.remote,
        together=index.transaction if isinstance(index, Index) else None,
    )
    return Services(
        store=keeper,
        find=qr.find,
        retrieve=qr.retrieve,
        move_destinations=config.move_destinations,
        move_tls=certificates.move_tls,
        gatekeeper=access,
        events=chained(reporter.service_events(), ActivityLog().service_events()),
    )


def _association_policy(config: NodeConfig) -> AcceptorPolicy:
    """Every storage SOP class and both Q/R models, for our AE title (or any)."""
    return storage_policy(
        config.ae_title,
        also=[uid for model in QueryModel for uid in model.value],
        transfer_syntaxes=config.transfer_syntaxes,
        accept_any_called_ae=config.accept_any_called_ae,
        called_ae_hint="set accept_any_called_ae = true (serve --accept-any-called-ae) to answer to any",
    )


async def _serve_metrics(
    node: RunningNode, metrics: NodeMetrics, port: int, backends: Backends
) -> None:
    """The Prometheus endpoint and /healthz; if the port is taken, the node closes again."""
    try:
        node.metrics_server = start_metrics_server(
            metrics, port, node.config.metrics_host, health=node.health
        )
    except OSError:
        await node.server.close()
        backends.close()
        raise


def _start_janitor(config: NodeConfig, backends: Backends) -> asyncio.Task[None] | None:
    from dicomtls.node.index_pg import PostgresIndex
    from dicomtls.node.janitor import Janitor
    from dicomtls.node.objects_s3 import S3ObjectStore

    index, store = backends.index, backends.store
    if config.janitor_interval is None or not isinstance(store, S3ObjectStore):
        return None
    assert isinstance(index, PostgresIndex)
    return asyncio.get_running_loop().create_task(
        Janitor(index, store).every(config.janitor_interval)
    )


def _recorder(index: IndexBackend) -> OnStored:
    """How a stored object gets its index row. An upload to S3 settles its intent in the
    same transaction (see :mod:`dicomtls.node.objects_s3`), with the size and SHA-256 the
    server verified."""
    from dicomtls.node.index_pg import PostgresIndex
    from dicomtls.node.objects_s3 import S3ObjectPath

    if not isinstance(index, PostgresIndex):
        return index.add

    def record(path: Path, attributes: Mapping[str, str], transfer_syntax: str) -> None:
        if isinstance(path, S3ObjectPath):
            index.add(
                path, attributes, transfer_syntax, size=path.size, sha256=path.sha256, settles=True
            )
        else:
            index.add(path, attributes, transfer_syntax)

    return record


def _warn_of_readable_ca_keys(config: NodeConfig) -> None:
    """One line if the node can read the private key of a CA it trusts: whoever can read
    the node's files could then mint certificates it accepts. Looks beside the CA files
    and where the first-run test PKI keeps its CA key."""
    if config.tls is None:
        return
    folders = [path.parent for path in as_paths(config.tls.ca_files)]
    if config.tls.ca_directory is not None:
        folders.append(Path(config.tls.ca_directory))
    folders.append(store_ca_key_folder(config.store))
    found = readable_ca_keys(config.tls.trust.ca_certificates, folders)
    if found:
        log.warning(
            "this node can read the private key of a CA it trusts (%s): whoever can read "
            "its files can issue certificates it accepts; keep CA keys off the node "
            "(acceptable for a test PKI)",
            "; ".join(f"{ca.subject.rfc4514_string()!r} in {path}" for ca, path in found),
        )


def _enough_files(max_associations: int, max_operations: int, max_handshakes: int) -> None:
    """Let the process open the files its limits may need: each association holds a socket
    and, with an operations window, that many objects' files at once; each pending TLS
    handshake a socket. Many systems start processes at 1,024 descriptors; servers raise
    their own limit towards the hard one."""
    try:
        import resource
    except ImportError:  # Windows: no such limit to raise here
        return
    # + 64: index, spares, logs, sub-associations
    need = max_associations * (max_operations + 2) + max_handshakes + 64
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft >= need:
        return
    allowed = need if hard == resource.RLIM_INFINITY else min(need, hard)
    resource.setrlimit(resource.RLIMIT_NOFILE, (allowed, hard))
    if allowed < need:
        log.warning(
            "open files: %d associations with up to %d C-STOREs outstanding and %d pending TLS "
            "handshakes may need %d file descriptors, and this process may have %d (raise the "
            "hard limit, ulimit -Hn); objects beyond it are refused with 0xA700",
            max_associations,
            max_operations,
            max_handshakes,
            need,
            allowed,
        )


def _host_name(host: str) -> str:
    return socket.gethostname() if host in ("", "0.0.0.0", "::") else host
