"""Where audit messages go: a file, syslog over UDP (RFC 5426), syslog over TLS (RFC 5425).

The rule every sink keeps: recording an audit event never blocks a DICOM association on
the network and never raises into it. Network sinks hand frames to one background thread
through a bounded queue; when the collector is slow or gone, the queue fills, further
messages are dropped *and counted*, and one warning is logged. A lost audit record is bad;
a PACS that stalls because the audit repository is down is worse (and PS3.15 A.6 notes the
sender is not told about loss anyway).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import queue
import re
import select
import socket
import ssl
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import BinaryIO, Protocol
from urllib.parse import parse_qs, urlsplit

from dicomtls.logs import get_logger

from .messages import AuditMessage

__all__ = [
    "AuditSink",
    "AuditTrail",
    "FileSink",
    "SyslogTLSSink",
    "SyslogUDPSink",
    "parse_sink",
    "syslog_frame",
]

log = get_logger("dicomtls.audit")

# PS3.15 A.6/A.7: facility 10 (security/authorization), severity 5 (notice) => <85>.
SYSLOG_FACILITY = 10
SYSLOG_SEVERITY = 5
# A.7: "The value 'DICOM+RFC3881' may be used for messages that comply with this profile."
SYSLOG_MSGID = "DICOM+RFC3881"
_BOM = b"\xef\xbb\xbf"  # RFC 5424 6.4: MSG in UTF-8 starts with the BOM


class AuditSink(Protocol):
    """Somewhere audit messages are delivered to."""

    def send(self, message: AuditMessage) -> None:
        """Queue or write ``message``; never blocks on the network, never raises."""

    def close(self) -> None:
        """Flush what is queued (bounded wait), then stop."""


# --- RFC 5424 ----------------------------------------------------------------------------------

_NOT_PRINTUSASCII = re.compile(r"[^\x21-\x7e]")


def _header_field(value: str | None, limit: int) -> str:
    """An RFC 5424 header field: PRINTUSASCII without spaces, bounded, NILVALUE if empty."""
    if not value:
        return "-"
    return _NOT_PRINTUSASCII.sub("_", value)[:limit] or "-"


def _timestamp(moment: dt.datetime | None) -> str:
    moment = (moment or dt.datetime.now(dt.UTC)).astimezone(dt.UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def syslog_frame(
    message: AuditMessage,
    *,
    hostname: str,
    app_name: str = "dicomtls",
    procid: str | None = None,
    timestamp: dt.datetime | None = None,
) -> bytes:
    """The RFC 5424 SYSLOG-MSG carrying ``message``: header, no structured data, BOM + XML.

    ``<85>1 TIMESTAMP HOSTNAME APP-NAME PROCID DICOM+RFC3881 - \\ufeff<AuditMessage...>``
    """
    pri = SYSLOG_FACILITY * 8 + SYSLOG_SEVERITY
    header = " ".join(
        (
            f"<{pri}>1",
            _timestamp(timestamp),
            _header_field(hostname, 255),
            _header_field(app_name, 48),
            _header_field(procid, 128),
            SYSLOG_MSGID,
            "-",  # STRUCTURED-DATA: none
        )
    )
    return header.encode("ascii") + b" " + _BOM + message.xml


# --- the sinks -------------------------------------------------------------------------------


class _Counters:
    """What a sink reports: delivered, failed attempts, and messages lost for good."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.sent = 0
        self.failures = 0
        self.dropped = 0

    def _count(self, name: str, n: int = 1) -> None:
        with self._lock:
            setattr(self, name, getattr(self, name) + n)


class FileSink(_Counters):
    """Appends one message per line (the XML is one line), flushed per message, then synced.

    A local file is not network I/O, so it is written in the caller's thread: simple, and the
    line is in the OS (it survives the node being killed) when ``send`` returns. A thread then
    fsyncs the file, as often as the disk allows and never in the caller's way, so that a power
    cut does not lose the records of objects that were themselves stored durably.

    Audit messages name patients, so the file gets ``mode`` (0600; 0640 lets the group
    read) whatever the umask, and the folders made for it the matching search bits. The
    file is opened at the first message: ``mode`` may be changed until then.
    """

    def __init__(self, path: Path | str, *, mode: int = 0o600) -> None:
        super().__init__()
        if mode not in (0o600, 0o640):
            raise ValueError(f"audit file mode {mode:04o}: use 0600, or 0640 to let the group read")
        self.path = Path(path)
        self.mode = mode
        self._write_lock = threading.Lock()
        self._handle: BinaryIO | None = None
        self._lost = 0
        """Messages lost since the file last took one (a full disk): said when it takes one again."""
        self._warned_sync = False
        self._closed = False
        self._written = threading.Event()
        """Set after each write, cleared by the syncer before each fsync."""
        self._syncer: threading.Thread | None = None
        self.synced = 0
        """fsyncs done: each covers every line written before it began."""

    def send(self, message: AuditMessage) -> None:
        try:
            with self._write_lock:
                if self._closed:
                    raise OSError("sink is closed")
                if self._handle is None:
                    self._handle = self._open()
                _append_whole(self._handle, message.xml + b"\n")
                self._sync_soon()
                lost, self._lost = self._lost, 0
        except OSError as exc:
            self._count("dropped")
            self._lost += 1
            if self._lost == 1:  # each time the file stops taking messages, not only the first
                log.warning("audit file %s not writable, messages are lost: %s", self.path, exc)
            return
        if lost:
            log.warning("audit file %s writable again: %d message(s) were lost", self.path, lost)
        self._count("sent")

    def _open(self) -> BinaryIO:
        """The file for appending, with exactly our mode (one line if it was wider)."""
        folder_mode = self.mode | (self.mode & 0o444) >> 2  # search wherever read is given
        missing = [p for p in (self.path.parent, *self.path.parent.parents) if not p.is_dir()]
        for folder in reversed(missing):
            with contextlib.suppress(FileExistsError):
                os.mkdir(folder, folder_mode)
                os.chmod(folder, folder_mode)
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, self.mode)
        try:
            before = os.fstat(fd).st_mode & 0o777
            if before != self.mode:
                os.fchmod(fd, self.mode)
                if before & ~self.mode and os.fstat(fd).st_size:  # an older file, not a new one
                    log.warning(
                        "audit file %s was mode %04o: now %04o", self.path, before, self.mode
                    )
        except OSError as exc:  # not ours to change: keep auditing, say so once
            log.warning("audit file %s: cannot set mode %04o: %s", self.path, self.mode, exc)
        return os.fdopen(fd, "ab", buffering=0)

    def close(self) -> None:
        with self._write_lock:
            self._closed = True
        self._written.set()  # the syncer wakes up, sees the sink closed and ends
        if self._syncer is not None:
            self._syncer.join(timeout=5.0)
        with self._write_lock:
            if self._handle is not None:
                self._sync()
                with contextlib.suppress(OSError):
                    self._handle.close()
                self._handle = None

    def _sync_soon(self) -> None:
        """Have the syncer fsync what was just written (called with the write lock held)."""
        if self._syncer is None:
            self._syncer = threading.Thread(
                target=self._sync_until_closed, name=f"audit-fsync-{self.path.name}", daemon=True
            )
            self._syncer.start()
        self._written.set()

    def _sync_until_closed(self) -> None:
        """One fsync after each burst of writes: lines written during an fsync share the next."""
        while True:
            self._written.wait()
            if self._closed:
                return  # close() syncs what is left
            self._written.clear()
            self._sync()

    def _sync(self) -> None:
        handle = self._handle  # set before the syncer starts, closed only after it has ended
        if handle is None:
            return
        try:
            os.fsync(handle.fileno())
        except (OSError, ValueError) as exc:
            if not self._warned_sync:
                self._warned_sync = True
                log.warning("audit file %s cannot be synced to disk: %s", self.path, exc)
            return
        self._count("synced")


def _append_whole(handle: BinaryIO, line: bytes) -> None:
    """Append ``line`` whole or not at all: a write cut short (a full disk) is taken back, or
    the file would keep a torn record, and the next one would be glued to it."""
    fd = handle.fileno()
    start = os.fstat(fd).st_size
    view = memoryview(line)
    try:
        while view:
            view = view[os.write(fd, view) :]
    except OSError:
        with contextlib.suppress(OSError):
            os.ftruncate(fd, start)
        raise


_STOP = object()

MAX_QUEUE_BYTES = 64 << 20
"""What a network sink holds for a collector that is down or slow: 10,000 ordinary messages
(a few KiB each) fit, but not 10,000 Query messages carrying 1 MiB identifiers (14 GB)."""


class _BackgroundSink(_Counters):
    """A queue bounded in messages and in bytes, and one worker thread that delivers frames
    in order. Loss is said in one warning when the queue fills, and again each time it
    fills after having drained to half (so a queue at its edge does not warn per message)."""

    retry = False
    """Keep a frame and retry (reconnecting) after a failure, instead of dropping it."""

    def __init__(
        self,
        name: str,
        *,
        hostname: str | None,
        app_name: str,
        max_queue: int,
        max_queue_bytes: int = MAX_QUEUE_BYTES,
        backoff: tuple[float, float] = (0.5, 30.0),
    ) -> None:
        super().__init__()
        self.name = name
        self.hostname = hostname or socket.gethostname()
        self.app_name = app_name
        self.max_queue = max_queue
        self.max_queue_bytes = max_queue_bytes
        self.queued_bytes = 0
        self._backoff = backoff
        self._queue: queue.Queue[object] = queue.Queue()
        self._abort = threading.Event()
        self._closed = False
        self._warned_full = False
        self._failing = False
        self._thread = threading.Thread(target=self._run, name=f"audit-{name}", daemon=True)
        self._thread.start()

    # caller side

    def send(self, message: AuditMessage) -> None:
        try:
            frame = syslog_frame(
                message, hostname=self.hostname, app_name=self.app_name, procid=str(os.getpid())
            )
            with self._lock:
                full = (
                    self._closed
                    or self._queue.qsize() >= self.max_queue
                    or self.queued_bytes + len(frame) > self.max_queue_bytes
                )
                if not full:
                    self.queued_bytes += len(frame)
                    self._queue.put_nowait(frame)
        except Exception:  # a sink must never break the caller
            self._count("dropped")
            log.exception("audit sink %s: could not queue a message", self.name)
            return
        if full:
            self._dropped_as_full()
        elif self._warned_full and self._half_empty():
            self._warned_full = False  # drained: the next time it fills is said again

    def _half_empty(self) -> bool:
        return (
            self._queue.qsize() <= self.max_queue // 2
            and self.queued_bytes <= self.max_queue_bytes // 2
        )

    def _dropped_as_full(self) -> None:
        self._count("dropped")
        if not self._warned_full and not self._closed:
            self._warned_full = True
            log.warning(
                "audit sink %s: queue full (%d messages, %d MiB), dropping messages "
                "(counted in .dropped)",
                self.name,
                self.max_queue,
                self.max_queue_bytes >> 20,
            )

    def close(self, timeout: float = 5.0) -> None:
        """Deliver what is queued for up to ``timeout`` seconds, then give up and stop."""
        if self._closed:
            return
        self._closed = True
        self._queue.put(_STOP)
        self._thread.join(timeout)
        if self._thread.is_alive():
            self._abort.set()  # cuts any backoff wait short
            self._thread.join(1.0)
        lost = 0
        while True:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                break
            if item is not _STOP:
                lost += 1
        if lost:
            self._count("dropped", lost)
            log.warning("audit sink %s: %d message(s) not delivered at close", self.name, lost)

    @property
    def pending(self) -> int:
        return self._queue.qsize()

    # worker side

    def _run(self) -> None:
        try:
            while not self._abort.is_set():
                item = self._queue.get()
                if item is _STOP:
                    break
                assert isinstance(item, bytes)
                self._count("queued_bytes", -len(item))
                self._deliver_with_retry(item)
        finally:
            self._disconnect()

    def _deliver_with_retry(self, frame: bytes) -> None:
        delay = self._backoff[0]
        while not self._abort.is_set():
            try:
                self._deliver(frame)
            except (OSError, ValueError) as exc:  # ssl.SSLError is an OSError
                self._count("failures")
                self._disconnect()
                if not self._failing:
                    self._failing = True
                    log.warning("audit sink %s: delivery failed: %s", self.name, exc)
                if not self.retry:
                    break
                if self._abort.wait(delay):
                    break
                delay = min(delay * 2, self._backoff[1])
                continue
            if self._failing:
                self._failing = False
                log.info("audit sink %s: delivering again", self.name)
            self._count("sent")
            return
        self._count("dropped")

    def _deliver(self, frame: bytes) -> None:
        raise NotImplementedError

    def _disconnect(self) -> None:
        """Forget the connection (if any) after an error or at the end."""


class SyslogUDPSink(_BackgroundSink):
    """RFC 5426: each RFC 5424 message in one UDP datagram; no retries (UDP cannot tell)."""

    def __init__(
        self,
        host: str,
        port: int = 514,
        *,
        hostname: str | None = None,
        app_name: str = "dicomtls",
        max_queue: int = 10_000,
    ) -> None:
        self.host, self.port = host, port
        self._sock: socket.socket | None = None
        self._address: tuple[str, int] | None = None
        super().__init__(
            f"udp://{host}:{port}", hostname=hostname, app_name=app_name, max_queue=max_queue
        )

    def _deliver(self, frame: bytes) -> None:
        if self._sock is None or self._address is None:
            # Resolve here, in the worker: a slow DNS answer must not stall the caller.
            family, kind, proto, _, address = socket.getaddrinfo(
                self.host, self.port, type=socket.SOCK_DGRAM
            )[0]
            self._sock = socket.socket(family, kind, proto)
            self._address = (str(address[0]), int(address[1]))
        self._sock.sendto(frame, self._address)

    def _disconnect(self) -> None:
        if self._sock is not None:
            self._sock.close()
        self._sock = None
        self._address = None


class SyslogTLSSink(_BackgroundSink):
    """RFC 5425: syslog over TLS 1.2+, octet-counting framing, mutual authentication.

    The collector's certificate is verified against ``ca_file`` and its name (or IP) checked
    against ``server_hostname`` (default: ``host``); our certificate is presented when given,
    as IHE ATNA requires. The TLS context is built here, so a bad certificate or key file is
    an error at configuration time, not a silent loss later.
    """

    retry = True
    connect_timeout = 5.0

    def __init__(
        self,
        host: str,
        port: int = 6514,
        *,
        certificate: Path | None,
        private_key: Path | None,
        ca_file: Path,
        server_hostname: str | None = None,
        hostname: str | None = None,
        app_name: str = "dicomtls",
        max_queue: int = 10_000,
        backoff: tuple[float, float] = (0.5, 30.0),
    ) -> None:
        if (certificate is None) != (private_key is None):
            raise ValueError("give both certificate and private_key, or neither")
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        context.load_verify_locations(cafile=str(ca_file))
        if certificate is not None and private_key is not None:
            context.load_cert_chain(str(certificate), str(private_key))
        self.host, self.port = host, port
        self.server_hostname = server_hostname or host
        self._context = context
        self._sock: ssl.SSLSocket | None = None
        super().__init__(
            f"tls://{host}:{port}",
            hostname=hostname,
            app_name=app_name,
            max_queue=max_queue,
            backoff=backoff,
        )

    def _connect(self) -> ssl.SSLSocket:
        raw = socket.create_connection((self.host, self.port), timeout=self.connect_timeout)
        try:
            tls = self._context.wrap_socket(raw, server_hostname=self.server_hostname)
        except BaseException:
            raw.close()
            raise
        tls.settimeout(self.connect_timeout)
        if tls.version() == "TLSv1.3":
            self._let_the_collector_finish(tls)
        log.info("audit sink %s: connected (%s)", self.name, tls.version())
        return tls

    def _let_the_collector_finish(self, tls: ssl.SSLSocket) -> None:
        """Wait (0.5 s at most) for the collector's session tickets, which it sends once it
        has read our Finished, before our first message. Against rsyslog 8.2302 (Debian 12,
        OpenSSL driver) the first message of a connection sometimes stayed unlogged until the
        next one came (3 in 30 runs of the syslog tests; none in 35 with this wait): most
        likely read along with our Finished and left in its TLS buffer by its event loop."""
        with contextlib.suppress(OSError, ValueError):
            readable, _, _ = select.select([tls], [], [], 0.5)
            if readable:
                self._peer_has_closed(tls)  # consumes the tickets (a closed peer shows next time)

    def _deliver(self, frame: bytes) -> None:
        if self._sock is not None and self._peer_has_closed(self._sock):
            # e.g. it refused our certificate after a TLS 1.3 handshake, or restarted.
            self._disconnect()
        if self._sock is None:
            self._sock = self._connect()
        self._sock.sendall(str(len(frame)).encode("ascii") + b" " + frame)

    def _peer_has_closed(self, sock: ssl.SSLSocket) -> bool:
        """Whether the collector has hung up: it never sends data, only TLS records.

        A readable socket is not enough to tell: TLS 1.3 session tickets arrive after
        the handshake. Reading without blocking consumes those and reports EOF or an alert.
        """
        try:
            readable, _, _ = select.select([sock], [], [], 0)
        except (OSError, ValueError):
            return True
        if not readable:
            return False
        sock.setblocking(False)
        try:
            return sock.recv(4096) == b""
        except (ssl.SSLWantReadError, ssl.SSLWantWriteError, BlockingIOError):
            return False  # only handshake records: still connected
        except OSError:
            return True
        finally:
            with contextlib.suppress(OSError):
                sock.settimeout(self.connect_timeout)

    def _disconnect(self) -> None:
        if self._sock is not None:
            with contextlib.suppress(OSError, ValueError):
                self._sock.settimeout(1.0)
                self._sock.unwrap()  # close_notify: the collector sees an orderly end
            with contextlib.suppress(OSError):
                self._sock.close()
        self._sock = None


# --- the fan-out -------------------------------------------------------------------------------


class AuditTrail:
    """Sends each audit message to every configured sink."""

    def __init__(self, sinks: Sequence[AuditSink]) -> None:
        self.sinks = tuple(sinks)

    def record(self, message: AuditMessage) -> None:
        log.debug("audit %s: %s", message.event, message)
        for sink in self.sinks:
            try:
                sink.send(message)
            except Exception:  # sinks promise not to raise; a broken one must not spread
                log.exception("audit sink %r raised", sink)

    @property
    def dropped(self) -> int:
        """Messages lost for good, summed over the sinks that count them."""
        return sum(int(getattr(sink, "dropped", 0)) for sink in self.sinks)

    def close(self) -> None:
        for sink in self.sinks:
            try:
                sink.close()
            except Exception:
                log.exception("audit sink %r failed to close", sink)


# --- configuration -----------------------------------------------------------------------------


def parse_sink(spec: str) -> AuditSink:
    """Build a sink from ``file:PATH``, ``udp://HOST[:PORT]`` or ``tls://HOST[:PORT]?ca=...``.

    TLS options: ``ca`` (required), ``cert`` and ``key`` (together), ``servername``.
    A bad spec raises ValueError with one line naming the spec and what is wrong.
    """
    scheme, sep, rest = spec.partition(":")
    scheme = scheme.lower()
    if not sep:
        raise _bad(spec, "expected file:PATH, udp://HOST:PORT or tls://HOST:PORT?ca=CA.pem")
    if scheme == "file":
        path = rest.removeprefix("//")
        if not path:
            raise _bad(spec, "no file path")
        return FileSink(Path(path))
    network = _NETWORK_SINKS.get(scheme)
    if network is None:
        raise _bad(spec, f"unknown scheme {scheme!r} (use file, udp or tls)")
    if not rest.startswith("//"):
        raise _bad(spec, f"expected {scheme}://HOST:PORT")
    parts = urlsplit(spec)
    if not parts.hostname:
        raise _bad(spec, "no host")
    try:
        port = parts.port
    except ValueError:
        raise _bad(spec, "port is not a number from 0 to 65535") from None
    return network(spec, parts.hostname, port, parts.query)


def _bad(spec: str, why: str) -> ValueError:
    """One line naming the sink spec and what is wrong with it."""
    return ValueError(f"audit sink {spec!r}: {why}")


def _udp_sink(spec: str, host: str, port: int | None, query: str) -> AuditSink:
    if query:
        raise _bad(spec, "udp takes no options")
    return SyslogUDPSink(host, port or 514)


_TLS_OPTIONS = ("ca", "cert", "key", "servername")


def _tls_sink(spec: str, host: str, port: int | None, query: str) -> AuditSink:
    options = _tls_options(spec, query)
    ca, cert, key = options.get("ca"), options.get("cert"), options.get("key")
    if ca is None:
        raise _bad(spec, "tls needs ca=PATH (the collector's CA certificate)")
    if (cert is None) != (key is None):
        raise _bad(spec, "give cert=PATH and key=PATH together")
    for name in ("ca", "cert", "key"):
        value = options.get(name)
        if value is not None and not Path(value).is_file():
            raise _bad(spec, f"{name} file {value} not found")
    try:
        return SyslogTLSSink(
            host,
            port or 6514,
            certificate=Path(cert) if cert else None,
            private_key=Path(key) if key else None,
            ca_file=Path(ca),
            server_hostname=options.get("servername"),
        )
    except (OSError, ValueError) as exc:  # ssl.SSLError included: unreadable cert or key
        raise _bad(spec, f"cannot load TLS files: {exc}") from None


def _tls_options(spec: str, query: str) -> dict[str, str]:
    """The query's options, each known and given once with a value."""
    options = parse_qs(query, keep_blank_values=True)
    unknown = sorted(set(options) - set(_TLS_OPTIONS))
    if unknown:
        raise _bad(spec, f"unknown option(s) {', '.join(unknown)} (use {', '.join(_TLS_OPTIONS)})")
    for name, values in options.items():
        if len(values) > 1 or not values[0]:
            raise _bad(spec, f"option {name} must be given once, with a value")
    return {name: values[0] for name, values in options.items()}


_NETWORK_SINKS = {"udp": _udp_sink, "tls": _tls_sink}
