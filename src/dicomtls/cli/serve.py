"""``dicomtls serve``: a secure DICOM node in one command, and ``dicomtls index --rebuild``."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import tomllib
from pathlib import Path
from typing import Any

import click

from dicomtls.audit.transport import AuditSink, AuditTrail, parse_sink
from dicomtls.cli.render import make_console, verify_printer
from dicomtls.cli.tlsopts import TLSOptions, tls_options
from dicomtls.net.scp import Limits
from dicomtls.node.index import Index
from dicomtls.node.node import DEFAULT_AE_TITLE, DEFAULT_PORT, NodeConfig, start_node
from dicomtls.node.policy import AccessPolicy, PolicyError
from dicomtls.node.storage import DurableStore
from dicomtls.pki import PKIFiles, init_pki

__all__ = ["register"]

console = make_console(stderr=True)
log = logging.getLogger("dicomtls.node")

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


def _audit(specs: tuple[str, ...], config: dict[str, Any]) -> AuditTrail | None:
    configured = config.get("audit", [])
    configured = [configured] if isinstance(configured, str) else list(configured)
    sinks: list[AuditSink] = []
    for spec in (*configured, *specs):
        try:
            sinks.append(parse_sink(str(spec)))
        except ValueError as exc:
            for sink in sinks:
                sink.close()
            raise click.BadParameter(str(exc), param_hint="--audit") from None
    return AuditTrail(sinks) if sinks else None


def _first_run_pki(store: Path, port: int, ae_title: str) -> PKIFiles:
    pki = PKIFiles(store / "pki")
    if not pki.exists():
        init_pki(pki.directory)
        console.print(
            f"created a local test PKI under {pki.directory} (CA, server and client certificates)"
        )
    console.print(
        "connect with:\n  dicomtls echo localhost "
        f"{port} --called-ae {ae_title} --ca {pki.ca} --tls-cert {pki.chain('client')} --tls-key {pki.key('client')}"
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
@click.option("--config", "config_file", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="TOML file with the same keys as the options (e.g. port = 11112).")  # fmt: skip
@tls_options
def serve(store: Path, host: str, port: int | None, ae_title: str | None, max_associations: int | None,
          max_per_peer: int | None, max_pending_handshakes: int | None,
          max_pending_per_peer: int | None, move_destination: tuple[str, ...], fsync: str, explain: bool, audit_specs: tuple[str, ...],
          metrics_port: int | None, metrics_host: str | None, handshake_timeout: float | None,
          artim_timeout: float | None, idle_timeout: float | None, config_file: Path | None,
          tls: TLSOptions) -> None:  # fmt: skip
    """Run a secure DICOM node: C-ECHO, C-STORE, C-FIND/C-MOVE/C-GET over what it stores.

    Run with no options on a fresh machine, it creates a test PKI under the store and
    prints the client command that uses it. Access rules binding AE titles to
    certificates go in the --config file's [access] table. The node rereads its
    certificate, key, CA and CRL files when they change, and on SIGHUP.

    \b
    Examples:
      dicomtls serve
      dicomtls serve --port 11112 --ae-title PACS --tls-cert node.pem --tls-key node.key --ca ca.pem
      dicomtls serve --move-destination VIEWER=10.0.0.5:2762 --config node.toml
      dicomtls serve --audit file:audit.log --audit udp://127.0.0.1:514 --metrics-port 9102
      dicomtls serve --handshake-timeout 10 --artim-timeout 10 --idle-timeout 60
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
    tls = _tls_from_config(tls, config)
    if tls.cert is None and not tls.no_tls:
        pki = _first_run_pki(store, port, ae_title)
        tls = TLSOptions(pki.chain("server"), pki.key("server"), tls.ca or (pki.ca,), tls.crl, tls.verify,
                         tls.profile, False, tls.key_password, False)  # fmt: skip
    on_verify = verify_printer(console) if explain else None
    settings = tls.settings("server", on_verify=on_verify, handshake_timeout=handshake_timeout)
    move_tls = None if settings is None else tls.settings("client")
    audit = _audit(audit_specs, config)
    node_config = NodeConfig(store=store, host=host, port=port, ae_title=ae_title, tls=settings,
                             move_destinations=destinations, move_tls=move_tls, limits=limits,
                             fsync=fsync == "always", access=access, audit=audit,
                             metrics_port=metrics_port, metrics_host=metrics_host)  # fmt: skip
    try:
        asyncio.run(_serve(node_config))
    finally:
        if audit is not None:
            audit.close()  # idempotent: the node closed it already unless it never started


async def _serve(config: NodeConfig) -> None:
    node = await start_node(config)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    loop.add_signal_handler(signal.SIGHUP, node.reload_tls)
    mode = "TLS " + config.tls.security_profile.name if config.tls else "plain TCP (no TLS)"
    if node.metrics_server is not None:
        console.print(f"metrics on http://{config.metrics_host}:{node.metrics_server.port}/metrics")
    console.print(f"dicomtls node {config.ae_title} listening on {config.host}:{node.port} ({mode}); "
                  f"store {config.store} ({node.index.count()} objects indexed)")  # fmt: skip
    await stop.wait()
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
    files = DurableStore(store).stored_files()
    db = Index(store / "index.sqlite")
    with contextlib.closing(db):
        indexed, bad = db.rebuild(files)
    console.print(f"indexed {indexed} object(s) from {store}; {bad} unreadable file(s) skipped")


def register(group: click.Group) -> None:
    group.add_command(serve)
    group.add_command(index)
