"""``dicomtls serve``: a secure DICOM node in one command, and ``dicomtls index --rebuild``.

Its options and ``--config`` keys are one table (:mod:`dicomtls.cli.config`). Everything
that can be checked is checked before anything is made: the settings, then that the
port is free, and only then the first-run PKI, the store and the listening socket.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import errno
import json
import signal
import socket
import tempfile
from pathlib import Path
from typing import Any

import click

from dicomtls.audit.transport import AuditSink, AuditTrail, FileSink, parse_sink
from dicomtls.cli.config import SERVE, ConfigError, Resolved, options, resolve
from dicomtls.cli.errors import UserError
from dicomtls.cli.logsetup import LEVELS, configure
from dicomtls.cli.render import make_console, shown, verify_printer
from dicomtls.cli.tlsopts import TLSOptions
from dicomtls.logs import get_logger
from dicomtls.net.proxy import ProxyProtocol
from dicomtls.net.scp import Limits
from dicomtls.node.backends import open_backends
from dicomtls.node.index import Index
from dicomtls.node.index_pg import IndexUnavailable, PostgresIndex
from dicomtls.node.node import NodeConfig, start_node
from dicomtls.node.policy import AccessPolicy, PolicyError
from dicomtls.node.room import DEFAULT_FLOOR, Floor, parse_floor
from dicomtls.node.s3 import S3Error
from dicomtls.node.storage import (
    GROUP_FILE_MODE,
    PRIVATE_FILE_MODE,
    DurableStore,
    parse_file_mode,
)
from dicomtls.pki import PKIFiles, init_pki
from dicomtls.pki.bundle import move_ca_key_out

__all__ = ["index", "janitor", "serve"]

console = make_console(stderr=True)
log = get_logger("dicomtls.node")


def _destinations(config: Resolved) -> dict[str, tuple[str, int]]:
    """AE title -> (host, port) of each ``AE=HOST:PORT`` (their form checked by the schema)."""
    found = {}
    for text in config["move_destinations"]:
        ae, _, address = text.partition("=")
        host, _, port = address.rpartition(":")
        found[ae.strip()] = (host.strip().strip("[]"), int(port))
    return found


def _access(config: Resolved, destinations: dict[str, tuple[str, int]]) -> AccessPolicy:
    try:
        return AccessPolicy.from_config(config.access, destinations)
    except PolicyError as exc:
        raise ConfigError(
            f"{config.file}: {exc}", "see the [access] example in README.md"
        ) from None


def _limits(config: Resolved) -> Limits:
    return Limits(
        max_associations=config["max_associations"],
        max_per_peer=config["max_per_peer"],
        max_pending_handshakes=config["max_pending_handshakes"],
        max_pending_per_peer=config["max_pending_per_peer"],
        artim_timeout=config["artim_timeout"],
        idle_timeout=config["idle_timeout"],
        shutdown_grace=config["shutdown_grace"],
    )


def _audit(config: Resolved) -> AuditTrail | None:
    sinks: list[AuditSink] = []
    for spec in config["audit"]:
        try:
            sink = parse_sink(spec)
        except ValueError as exc:
            for made in sinks:
                made.close()
            raise ConfigError(f"{config.named('audit')}: {exc}") from None
        if isinstance(sink, FileSink):
            sink.mode = parse_file_mode(
                config["file_mode"]
            )  # audit messages name patients, like the store
        sinks.append(sink)
    return AuditTrail(sinks) if sinks else None


def _can_listen(host: str, port: int | None, option: str) -> None:
    """Fail now, in one line, if ``host:port`` cannot be listened on: before the first-run
    PKI is made and before anything is printed as if the node were coming up. (Bound
    like asyncio binds, SO_REUSEADDR; the node binds for real a moment later.)"""
    if not port:
        return
    try:
        addresses = socket.getaddrinfo(
            host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )
    except socket.gaierror as exc:
        raise UserError(
            f"--host {host}: {exc.strerror}",
            code="BAD_HOST",
            hint="give a name or address of this machine, or 0.0.0.0 for all",
        ) from None
    for family, kind, proto, _, address in addresses:
        with socket.socket(family, kind, proto) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:
                probe.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            try:
                probe.bind(address)
            except OSError as exc:
                raise _cannot_listen(exc, host, port, option) from None


def _cannot_listen(exc: OSError, host: str, port: int, option: str) -> UserError:
    where = f"cannot listen on {host}:{port}"
    if exc.errno == errno.EADDRINUSE:
        return UserError(
            f"{where}: address already in use",
            code="PORT_IN_USE",
            hint=f"stop what listens there (another dicomtls serve?), or pass {option} N",
        )
    if exc.errno == errno.EACCES:
        return UserError(
            f"{where}: permission denied",
            code="PERMISSION_DENIED",
            hint=f"ports below 1024 need root or CAP_NET_BIND_SERVICE: pass {option} 1024 or above",
        )
    if exc.errno == errno.EADDRNOTAVAIL:
        return UserError(
            f"{where}: {host} is not an address of this machine",
            code="BAD_HOST",
            hint="pass --host with one of its addresses, or 0.0.0.0 for all",
        )
    return UserError(f"{where}: {exc.strerror}", code="OS_ERROR")


def _move_ca_key_out(store: Path) -> None:
    """A first-run CA key an older version left inside the store goes beside it."""
    try:
        moved = move_ca_key_out(store)
    except (OSError, ValueError) as exc:
        raise UserError(f"the test CA key in {store / 'pki'}: {exc}", code="CA_KEY") from None
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
@options(SERVE)
@click.option(
    "--config",
    "config_file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="TOML file: every option is a key (--max-per-peer: max_per_peer), plus "
    "[access] rules; the command line wins over the file.",
)
@click.option(
    "--print-config",
    is_flag=True,
    help="Print the effective configuration (command line, then --config, then "
    "defaults, each value with where it came from) as TOML, and exit.",
)
@click.option(
    "--json",
    "as_json",
    is_flag=True,
    help="--print-config as JSON; an error as a JSON object on stdout.",
)
@click.pass_context
def serve(
    ctx: click.Context, /, config_file: Path | None, print_config: bool, as_json: bool, **given: Any
) -> None:
    """Run a secure DICOM node: C-ECHO, C-STORE, C-FIND/C-MOVE/C-GET over what it stores.

    Run with no options on a fresh machine, it creates a test PKI under the store (its
    CA key beside the store, in STORE-ca) and prints the client command that uses it.
    Access rules binding AE titles to certificates go in the --config file's [access]
    table. The node rereads its certificate, key, CA and CRL files when they change, and
    on SIGHUP. Stored objects, index and audit file are 0600 (--file-mode 0640: the
    group may read), whatever the umask. Ctrl-C (SIGINT) or SIGTERM stops it: running
    transfers may finish (--shutdown-grace), and what was acknowledged is on disk.

    \b
    Examples:
      dicomtls serve
      dicomtls serve --port 11112 --ae-title PACS --tls-cert node.pem --tls-key node.key --ca ca.pem
      dicomtls serve --move-destination VIEWER=10.0.0.5:2762 --config node.toml
      dicomtls serve --config node.toml --print-config
      dicomtls serve --audit file:audit.log --audit udp://127.0.0.1:514 --metrics-port 9102
      dicomtls serve --log-level warning --log-file node.log
      dicomtls serve --index postgresql://dicom@db/pacs --objects 's3://pacs?endpoint=https://s3.example.org' --trusted-proxy 10.0.0.5/32
    """
    config = resolve(ctx, given, config_file, check_files=not print_config)
    destinations = _destinations(config)
    access = _access(config, destinations)
    tls = TLSOptions.of(config.values)
    tls.verify_flags()
    if print_config:
        click.echo(config.to_json() if as_json else config.to_toml(), nl=not as_json)
        return
    audit = _audit(config)  # a bad sink is a mistake in the settings: said before the rest
    try:
        _start(ctx, config, tls, access, destinations, audit)
    finally:
        if audit is not None:
            audit.close()  # idempotent: the node closed it already unless it never started


def _start(
    ctx: click.Context,
    config: Resolved,
    tls: TLSOptions,
    access: AccessPolicy,
    destinations: dict[str, tuple[str, int]],
    audit: AuditTrail | None,
) -> None:
    """Check the ports, then make what is missing (the first-run PKI) and run the node."""
    store, port, ae_title = config["store"], config["port"], config["ae_title"]
    _can_listen(config["host"], port, "--port")
    _can_listen(config["metrics_host"], config["metrics_port"], "--metrics-port")
    debug = bool(ctx.find_root().params.get("debug"))
    configure(LEVELS["debug" if debug else config["log_level"]], config["log_file"])
    _move_ca_key_out(store)
    if tls.cert is None and not tls.no_tls:
        pki = _first_run_pki(store, port, ae_title)
        tls = dataclasses.replace(
            tls,
            cert=pki.chain("server"),
            key=pki.key("server"),
            ca=tls.ca or (pki.ca,),
        )
    on_verify = verify_printer(console) if config["explain"] else None
    settings = tls.settings(
        "server", on_verify=on_verify, handshake_timeout=config["handshake_timeout"]
    )
    move_tls = None if settings is None else tls.settings("client")
    node_config = NodeConfig(
        store=store,
        host=config["host"],
        port=port,
        ae_title=ae_title,
        tls=settings,
        move_destinations=destinations,
        move_tls=move_tls,
        limits=_limits(config),
        fsync=config["fsync"] == "always",
        access=access,
        audit=audit,
        metrics_port=config["metrics_port"],
        metrics_host=config["metrics_host"],
        file_mode=parse_file_mode(config["file_mode"]),
        accept_any_called_ae=config["accept_any_called_ae"],
        index=config["index"],
        objects=config["objects"],
        proxy=_proxy(config),
        janitor_interval=config["janitor_interval"],
        min_free_space=_floor(config["min_free_space"]),
    )
    asyncio.run(_serve(node_config, config["drain_seconds"] or 0.0))


def _floor(value: object) -> Floor:
    """The store's free-space floor: the setting (checked when read), else the default."""
    return DEFAULT_FLOOR if value is None else parse_floor(str(value))


def _proxy(config: Resolved) -> ProxyProtocol | None:
    """PROXY protocol v2: proxy_protocol = true (or --trusted-proxy) and the trusted networks."""
    trusted = list(config["trusted_proxies"])
    if not (config["proxy_protocol"] or trusted):
        return None
    try:
        return ProxyProtocol.from_config(trusted, header_timeout=config["proxy_header_timeout"])
    except ValueError as exc:
        raise ConfigError(
            str(exc), hint='trusted_proxies = ["10.0.0.5/32"] (--trusted-proxy)'
        ) from None


async def _serve(config: NodeConfig, drain_seconds: float = 0.0) -> None:
    try:
        node = await start_node(config)
    except (ValueError, IndexUnavailable, S3Error) as exc:  # a setting, or the index away
        raise UserError(str(exc), code="BACKEND") from None
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
    console.print(
        f"dicomtls node {shown(config.ae_title)} listening on {shown(config.host)}:{node.port} "
        f"({mode}); store {shown(config.store)} ({node.index.count()} objects indexed); "
        "Ctrl-C stops it"
    )
    waiters = [asyncio.create_task(stop.wait()), asyncio.create_task(draining.wait())]
    await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
    if not stop.is_set():
        console.print(
            f"draining: /healthz answers 503 for {drain_seconds:g} s, then the node stops"
        )
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
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def index(store: Path, rebuild: bool, as_json: bool) -> None:
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
        indexed, skipped = db.rebuild(files)
    if as_json:
        click.echo(json.dumps({"store": str(store), "indexed": indexed, "skipped": skipped}))
        return
    why = " (each named above)" if skipped else ""
    console.print(f"indexed {indexed} object(s) from {shown(store)}; {skipped} skipped{why}")


@click.command("janitor")
@click.option(
    "--index", "index_url", required=True, metavar="URL", help="The nodes' PostgreSQL index."
)
@click.option(
    "--objects",
    "objects_url",
    required=True,
    metavar="URL",
    help="Their S3 bucket (s3://BUCKET?endpoint=URL).",
)
@click.option(
    "--grace",
    type=click.FloatRange(min=0),
    default=3600.0,
    show_default=True,
    metavar="SECONDS",
    help="Leave uploads younger than this alone (they may still be indexed).",
)
def janitor(index_url: str, objects_url: str, grace: float) -> None:
    """Remove objects in S3 that no index row names: a scale-out node's leftovers.

    Uploads of a node that died mid-store, copies a re-send replaced. Nodes with objects in S3
    run it themselves every 10 minutes, one at a time; this runs one pass now.

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
            raise UserError(str(exc), code="BACKEND") from None
        with contextlib.closing(backends):
            assert isinstance(backends.index, PostgresIndex)
            assert isinstance(backends.store, S3ObjectStore)
            swept = Janitor(backends.index, backends.store).run(grace)
    if swept is None:
        console.print("janitor: another node's janitor is running; nothing done")
        return
    console.print(
        f"janitor: removed {swept.removed} object(s) no index row names; "
        f"{swept.failed} left for the next run"
    )
