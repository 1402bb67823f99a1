"""``dicomtls serve``: a secure DICOM node in one command, and ``dicomtls index --rebuild``."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import tempfile
import tomllib
from pathlib import Path
from typing import Any

import click

from dicomtls.audit.transport import AuditSink, AuditTrail, FileSink, parse_sink
from dicomtls.cli.render import make_console, shown, verify_printer
from dicomtls.cli.tlsopts import TLSOptions, tls_options
from dicomtls.logs import get_logger
from dicomtls.net.proxy import ProxyProtocol
from dicomtls.net.scp import Limits
from dicomtls.node.backends import open_backends
from dicomtls.node.index import Index
from dicomtls.node.index_pg import IndexUnavailable, PostgresIndex
from dicomtls.node.node import DEFAULT_AE_TITLE, DEFAULT_PORT, NodeConfig, start_node
from dicomtls.node.policy import AccessPolicy, PolicyError
from dicomtls.node.s3 import S3Error
from dicomtls.node.storage import (
    GROUP_FILE_MODE,
    PRIVATE_FILE_MODE,
    DurableStore,
    parse_file_mode,
)
from dicomtls.pki import PKIFiles, init_pki
from dicomtls.pki.bundle import move_ca_key_out

__all__ = ["register"]

console = make_console(stderr=True)
log = get_logger("dicomtls.node")

_SECONDS = click.FloatRange(min=0, min_open=True)


def _destination(text: str) -> tuple[str, tuple[str, int]]:
    ae, _, address = text.partition("=")
    host, _, port = address.rpartition(":")
    if not ae or not host or not port.isdigit():
        raise click.BadParameter(f"{text!r}: use AE=HOST:PORT", param_hint="--move-destination")
    return ae.strip(), (host.strip("[]"), int(port))


def _load_config(path: Path | None) -> dict[str, Any]:
    if path is None:
        return {}
    try:
        with path.open("rb") as handle:
            return tomllib.load(handle)
    except tomllib.TOMLDecodeError as exc:
        raise click.BadParameter(f"{path}: {exc}", param_hint="--config") from None


def _timeout(given: float | None, config: dict[str, Any], key: str) -> float | None:
    """A timeout in seconds from the command line, else the config file, else None (default)."""
    if given is not None:
        return given
    if key not in config:
        return None
    value = config[key]
    if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
        raise click.BadParameter(
            f"{key} = {value!r}: give a number of seconds > 0", param_hint="--config"
        )
    return float(value)


def _count(given: int | None, config: dict[str, Any], key: str) -> int | None:
    """A count >= 1 from the command line, else the config file, else None (default)."""
    if given is not None:
        return given
    if key not in config:
        return None
    value = config[key]
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise click.BadParameter(
            f"{key} = {value!r}: give a whole number >= 1", param_hint="--config"
        )
    return value


def _tls_from_config(tls: TLSOptions, config: dict[str, Any]) -> TLSOptions:
    """Config-file TLS keys (tls_cert, tls_key, ca, crl, verify, profile, no_tls) where the
    command line gave nothing."""

    def paths(key: str) -> tuple[Path, ...]:
        value = config.get(key, [])
        return tuple(Path(v) for v in ([value] if isinstance(value, str) else value))

    cert = tls.cert or (Path(config["tls_cert"]) if "tls_cert" in config else None)
    key = tls.key or (Path(config["tls_key"]) if "tls_key" in config else None)
    for name, path in (
        ("tls_cert", cert),
        ("tls_key", key),
        *((k, p) for k in ("ca", "crl") for p in paths(k)),
    ):
        if path is not None and not path.exists():
            raise click.BadParameter(
                f"{name} = {str(path)!r}: file not found", param_hint="--config"
            )
    default_verify = tls.verify == "peer,fail-if-no-peer-cert"
    return TLSOptions(
        cert=cert,
        key=key,
        ca=tls.ca or paths("ca"),
        crl=tls.crl or paths("crl"),
        verify=str(config.get("verify", tls.verify)) if default_verify else tls.verify,
        profile=str(config.get("profile", tls.profile)),
        no_tls=tls.no_tls or bool(config.get("no_tls", False)),
        key_password=tls.key_password,
        check_hostname=tls.check_hostname,
    )


def _access(config: dict[str, Any], destinations: dict[str, tuple[str, int]]) -> AccessPolicy:
    try:
        return AccessPolicy.from_config(config.get("access"), destinations)
    except PolicyError as exc:
        raise click.BadParameter(str(exc), param_hint="--config [access]") from None


def _file_mode(given: str | None, config: dict[str, Any]) -> int:
    """The store's file mode from the command line, else the config file, else 0600."""
    value = given if given is not None else config.get("file_mode", PRIVATE_FILE_MODE)
    try:
        return parse_file_mode(value)
    except ValueError as exc:
        hint = "--file-mode" if given is not None else "--config file_mode"
        raise click.BadParameter(str(exc), param_hint=hint) from None


def _audit(specs: tuple[str, ...], config: dict[str, Any], file_mode: int) -> AuditTrail | None:
    configured = config.get("audit", [])
    configured = [configured] if isinstance(configured, str) else list(configured)
    sinks: list[AuditSink] = []
    for spec in (*configured, *specs):
        try:
            sink = parse_sink(str(spec))
        except ValueError as exc:
            for made in sinks:
                made.close()
            raise click.BadParameter(str(exc), param_hint="--audit") from None
        if isinstance(sink, FileSink):
            sink.mode = file_mode  # audit messages name patients, like the store
        sinks.append(sink)
    return AuditTrail(sinks) if sinks else None


def _move_ca_key_out(store: Path) -> None:
    """A first-run CA key an older version left inside the store goes beside it."""
    try:
        moved = move_ca_key_out(store)
    except (OSError, ValueError) as exc:
        raise click.ClickException(f"the test CA key in {store / 'pki'}: {exc}") from None
    if moved is not None:
        log.warning(
            "moved the test CA's private key out of the store, %s -> %s: a copy of the store "
            "could have issued certificates this node trusts",
            *moved,
        )


def _first_run_pki(store: Path, port: int, ae_title: str) -> PKIFiles:
    pki = PKIFiles.of_store(store)
    if not pki.exists():
        init_pki(pki.directory, key_directory=pki.key_directory)
        console.print(
            f"created a local test PKI under {shown(pki.directory)} (CA, server and client "
            f"certificates);\nits CA key is outside the store, in {shown(pki.ca_key)}"
        )
    console.print(
        "connect with:\n  dicomtls echo localhost "
        f"{port} --called-ae {shown(ae_title)} --ca {shown(pki.ca)} "
        f"--tls-cert {shown(pki.chain('client'))} --tls-key {shown(pki.key('client'))}"
    )
    return pki


@click.command()
@click.option("--store", type=click.Path(file_okay=False, path_type=Path), default=Path("dicom-store"), show_default=True,
              help="Where received objects and the index live.")  # fmt: skip
@click.option("--host", default="0.0.0.0", show_default=True)
@click.option(
    "--port",
    type=click.IntRange(0, 65535),
    default=None,
    help=f"Listening port [default: {DEFAULT_PORT}].",
)
@click.option("--ae-title", default=None, help=f"Our AE title [default: {DEFAULT_AE_TITLE}].")
@click.option("--accept-any-called-ae", is_flag=True, default=None,
              help="Answer associations whatever AE title they call (as DCMTK's storescp does), "
                   "not only --ae-title.")  # fmt: skip
@click.option(
    "--max-associations",
    type=click.IntRange(1),
    default=None,
    help="Concurrent associations [default: 100].",
)
@click.option("--max-per-peer", type=click.IntRange(1), default=None,
              help="Concurrent associations from one IP address (raise it for a gateway or NAT) "
                   "[default: 20].")  # fmt: skip
@click.option("--max-pending-handshakes", type=click.IntRange(1), default=None,
              help="TLS handshakes in progress at once; more connections are closed at once "
                   "[default: 512, or --max-associations if larger].")  # fmt: skip
@click.option("--max-pending-per-peer", type=click.IntRange(1), default=None,
              help="TLS handshakes in progress from one IP address (IPv6: one /64) "
                   "[default: 32, or --max-per-peer if larger].")  # fmt: skip
@click.option(
    "--move-destination", multiple=True, help="AE=HOST:PORT where C-MOVE may send (repeatable)."
)
@click.option("--fsync", type=click.Choice(["always", "never"]), default="always", show_default=True,
              help="'never' relaxes durability for benchmarks: Success before data is on disk.")  # fmt: skip
@click.option("--explain", is_flag=True, help="Print each verify-callback call as it happens.")
@click.option("--audit", "audit_specs", multiple=True, metavar="SPEC",
              help="Send audit messages (PS3.15 A.5) to file:PATH, udp://HOST:514 or "
                   "tls://HOST:6514?ca=CA.pem&cert=C.pem&key=C.key (repeatable).")  # fmt: skip
@click.option("--metrics-port", type=click.IntRange(0, 65535), default=None,
              help="Serve Prometheus metrics on this port (on --metrics-host).")  # fmt: skip
@click.option(
    "--metrics-host", default=None, help="Address for --metrics-port [default: 127.0.0.1]."
)
@click.option("--handshake-timeout", type=_SECONDS, default=None, metavar="SECONDS",
              help="Close a connection whose TLS handshake is not complete this long after it "
                   "was accepted [default: 30].")  # fmt: skip
@click.option("--artim-timeout", type=_SECONDS, default=None, metavar="SECONDS",
              help="Close a connection whose A-ASSOCIATE-RQ is not complete this long after the "
                   "link is up (and after a release or rejection) [default: 30].")  # fmt: skip
@click.option("--idle-timeout", type=_SECONDS, default=None, metavar="SECONDS",
              help="Abort an association that completes no PDU for this long [default: 300].")  # fmt: skip
@click.option("--file-mode", default=None, metavar="MODE",
              help="Mode of stored objects, index and audit file: 0600, or 0640 to let the "
                   "node's group read (folders 0700/0750); never wider [default: 0600].")  # fmt: skip
@click.option("--index", "index_url", default=None, metavar="URL",
              help="Keep the index in PostgreSQL (postgresql://USER@HOST/DB), shared by several "
                   "nodes [default: SQLite in the store].")  # fmt: skip
@click.option("--objects", "objects_url", default=None, metavar="URL",
              help="Keep objects in S3 (s3://BUCKET?endpoint=URL; needs --index; credentials "
                   "from the environment as AWS tools read them) [default: the store].")  # fmt: skip
@click.option("--trusted-proxy", "trusted_proxies", multiple=True, metavar="CIDR",
              help="Require a PROXY protocol v2 header from this balancer network (repeatable); "
                   "the client it names is the peer everywhere.")  # fmt: skip
@click.option("--drain-seconds", type=_SECONDS, default=None, metavar="SECONDS",
              help="On SIGTERM, answer /healthz 503 this long before closing, so a balancer "
                   "moves new clients elsewhere first (SIGUSR1: drain only) [default: 0].")  # fmt: skip
@click.option("--config", "config_file", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="TOML file with the same keys as the options (e.g. port = 11112).")  # fmt: skip
@tls_options
def serve(store: Path, host: str, port: int | None, ae_title: str | None,
          accept_any_called_ae: bool | None, max_associations: int | None,
          max_per_peer: int | None, max_pending_handshakes: int | None,
          max_pending_per_peer: int | None, move_destination: tuple[str, ...], fsync: str, explain: bool, audit_specs: tuple[str, ...],
          metrics_port: int | None, metrics_host: str | None, handshake_timeout: float | None,
          artim_timeout: float | None, idle_timeout: float | None, file_mode: str | None,
          index_url: str | None, objects_url: str | None, trusted_proxies: tuple[str, ...],
          drain_seconds: float | None, config_file: Path | None, tls: TLSOptions) -> None:  # fmt: skip
    """Run a secure DICOM node: C-ECHO, C-STORE, C-FIND/C-MOVE/C-GET over what it stores.

    Run with no options on a fresh machine, it creates a test PKI under the store (its
    CA key beside the store, in STORE-ca) and prints the client command that uses it.
    Access rules binding AE titles to certificates go in the --config file's [access]
    table. The node rereads its certificate, key, CA and CRL files when they change, and
    on SIGHUP. Stored objects, index and audit file are 0600 (--file-mode 0640: the
    group may read), whatever the umask.

    \b
    Examples:
      dicomtls serve
      dicomtls serve --port 11112 --ae-title PACS --tls-cert node.pem --tls-key node.key --ca ca.pem
      dicomtls serve --move-destination VIEWER=10.0.0.5:2762 --config node.toml
      dicomtls serve --audit file:audit.log --audit udp://127.0.0.1:514 --metrics-port 9102
      dicomtls serve --handshake-timeout 10 --artim-timeout 10 --idle-timeout 60
      dicomtls serve --index postgresql://dicom@db/pacs --objects 's3://pacs?endpoint=https://s3.example.org' --trusted-proxy 10.0.0.5/32
    """
    config = _load_config(config_file)
    port = port if port is not None else int(config.get("port", DEFAULT_PORT))
    ae_title = ae_title or str(config.get("ae_title", DEFAULT_AE_TITLE))
    store = Path(config.get("store", store))
    destinations = dict(
        _destination(d) for d in (*config.get("move_destinations", []), *move_destination)
    )
    handshake_timeout = _timeout(handshake_timeout, config, "handshake_timeout")
    default = Limits()
    limits = Limits(
        max_associations=max_associations
        or int(config.get("max_associations", default.max_associations)),
        max_per_peer=max_per_peer or int(config.get("max_per_peer", default.max_per_peer)),
    )
    limits.max_pending_handshakes = _count(max_pending_handshakes, config, "max_pending_handshakes")
    limits.max_pending_per_peer = _count(max_pending_per_peer, config, "max_pending_per_peer")
    if (artim := _timeout(artim_timeout, config, "artim_timeout")) is not None:
        limits.artim_timeout = artim
    if (idle := _timeout(idle_timeout, config, "idle_timeout")) is not None:
        limits.idle_timeout = idle
    access = _access(config, destinations)
    if metrics_port is None and "metrics_port" in config:
        metrics_port = int(config["metrics_port"])
    metrics_host = metrics_host or str(config.get("metrics_host", "127.0.0.1"))
    mode = _file_mode(file_mode, config)
    tls = _tls_from_config(tls, config)
    _move_ca_key_out(store)
    if tls.cert is None and not tls.no_tls:
        pki = _first_run_pki(store, port, ae_title)
        tls = TLSOptions(pki.chain("server"), pki.key("server"), tls.ca or (pki.ca,), tls.crl, tls.verify,
                         tls.profile, False, tls.key_password, False)  # fmt: skip
    on_verify = verify_printer(console) if explain else None
    settings = tls.settings("server", on_verify=on_verify, handshake_timeout=handshake_timeout)
    move_tls = None if settings is None else tls.settings("client")
    audit = _audit(audit_specs, config, mode)
    node_config = NodeConfig(store=store, host=host, port=port, ae_title=ae_title, tls=settings,
                             move_destinations=destinations, move_tls=move_tls, limits=limits,
                             fsync=fsync == "always", access=access, audit=audit,
                             metrics_port=metrics_port, metrics_host=metrics_host,
                             file_mode=mode, accept_any_called_ae=bool(
                                 accept_any_called_ae or config.get("accept_any_called_ae", False)),
                             index=index_url or config.get("index") or None,
                             objects=objects_url or config.get("objects") or None,
                             proxy=_proxy(trusted_proxies, config),
                             janitor_interval=_timeout(None, config, "janitor_interval") or 600.0)  # fmt: skip
    drain = _timeout(drain_seconds, config, "drain_seconds") or 0.0
    try:
        asyncio.run(_serve(node_config, drain))
    finally:
        if audit is not None:
            audit.close()  # idempotent: the node closed it already unless it never started


def _proxy(given: tuple[str, ...], config: dict[str, Any]) -> ProxyProtocol | None:
    """PROXY protocol v2 from --trusted-proxy, or proxy_protocol = true and trusted_proxies."""
    trusted = list(given) or list(config.get("trusted_proxies", []))
    if not (given or config.get("proxy_protocol", False)):
        if trusted:
            raise click.BadParameter("trusted_proxies is set: add proxy_protocol = true", param_hint="config")
        return None
    timeout = _timeout(None, config, "proxy_header_timeout") or 5.0
    try:
        return ProxyProtocol.from_config(trusted, header_timeout=timeout)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--trusted-proxy / trusted_proxies") from None


async def _serve(config: NodeConfig, drain_seconds: float = 0.0) -> None:
    try:
        node = await start_node(config)
    except (ValueError, IndexUnavailable, S3Error) as exc:  # a setting, or the index away
        raise click.ClickException(str(exc)) from None
    stop = asyncio.Event()
    draining = asyncio.Event()
    loop = asyncio.get_running_loop()

    def terminate() -> None:  # first SIGTERM: drain, then stop; a second one: stop now
        if draining.is_set() or not drain_seconds:
            stop.set()
        node.drain()
        draining.set()

    loop.add_signal_handler(signal.SIGINT, stop.set)
    loop.add_signal_handler(signal.SIGTERM, terminate)
    loop.add_signal_handler(signal.SIGUSR1, node.drain)
    loop.add_signal_handler(signal.SIGHUP, node.reload_tls)
    mode = "TLS " + config.tls.security_profile.name if config.tls else "plain TCP (no TLS)"
    if node.metrics_server is not None:
        console.print(f"metrics on http://{config.metrics_host}:{node.metrics_server.port}/metrics")
    console.print(f"dicomtls node {shown(config.ae_title)} listening on {shown(config.host)}:{node.port} "
                  f"({mode}); store {shown(config.store)} ({node.index.count()} objects indexed)")  # fmt: skip
    waiters = [asyncio.create_task(stop.wait()), asyncio.create_task(draining.wait())]
    await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
    if not stop.is_set():
        console.print(f"draining: /healthz answers 503 for {drain_seconds:g} s, then the node stops")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), drain_seconds)
    for waiter in waiters:
        waiter.cancel()
    console.print("shutting down: running transfers may finish")
    await node.close()


@click.command("index")
@click.option(
    "--store",
    type=click.Path(file_okay=False, exists=True, path_type=Path),
    default=Path("dicom-store"),
    show_default=True,
)
@click.option(
    "--rebuild",
    is_flag=True,
    required=True,
    help="Recreate the SQLite index from the stored files.",
)
def index(store: Path, rebuild: bool) -> None:
    """Rebuild a node's index from its files (the files are the truth).

    \b
    Example:
      dicomtls index --rebuild --store ./dicom-store
    """
    # The store folder's own mode says whether its node lets the group read (serve --file-mode).
    mode = GROUP_FILE_MODE if store.stat().st_mode & 0o040 else PRIVATE_FILE_MODE
    files = DurableStore(store, file_mode=mode).stored_files()
    db = Index(store / "index.sqlite", mode=mode)
    with contextlib.closing(db):
        indexed, bad = db.rebuild(files)
    console.print(f"indexed {indexed} object(s) from {shown(store)}; {bad} unreadable file(s) skipped")


@click.command("janitor")
@click.option("--index", "index_url", required=True, metavar="URL", help="The nodes' PostgreSQL index.")
@click.option("--objects", "objects_url", required=True, metavar="URL", help="Their S3 bucket (s3://BUCKET?endpoint=URL).")
@click.option("--grace", type=click.FloatRange(min=0), default=3600.0, show_default=True, metavar="SECONDS",
              help="Leave uploads younger than this alone (they may still be indexed).")  # fmt: skip
def janitor(index_url: str, objects_url: str, grace: float) -> None:
    """Remove objects in S3 that no index row names (uploads of a node that died mid-store,
    copies a re-send replaced). Nodes with objects in S3 run it themselves every 10 minutes,
    one at a time; this runs one pass now.

    \b
    Example:
      dicomtls janitor --index postgresql://dicom@db/pacs --objects 's3://pacs?endpoint=http://s3:8333'
    """
    from dicomtls.node.janitor import Janitor
    from dicomtls.node.objects_s3 import S3ObjectStore

    with tempfile.TemporaryDirectory(prefix="dicomtls-janitor-") as spool:  # reads nothing into it
        try:
            backends = open_backends(Path(spool), index=index_url, objects=objects_url)
        except (ValueError, IndexUnavailable, S3Error) as exc:
            raise click.ClickException(str(exc)) from None
        with contextlib.closing(backends):
            assert isinstance(backends.index, PostgresIndex)
            assert isinstance(backends.store, S3ObjectStore)
            swept = Janitor(backends.index, backends.store).run(grace)
    if swept is None:
        console.print("janitor: another node's janitor is running; nothing done")
        return
    console.print(f"janitor: removed {swept.removed} object(s) no index row names; "
                  f"{swept.failed} left for the next run")  # fmt: skip


def register(group: click.Group) -> None:
    group.add_command(serve)
    group.add_command(index)
    group.add_command(janitor)
