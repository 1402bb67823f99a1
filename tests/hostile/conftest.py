"""A real ``dicomtls serve`` under attack: the node's log read live, per peer, and a good client.

Each hostile test names its connection by the local port the test's socket got
(``127.0.0.1:PORT``), so one node can serve a whole module: every test checks the
lines naming *its* peer, and the teardown checks that no peer got more than one line
and that nothing in the log is a traceback.
"""

from __future__ import annotations

import asyncio
import re
import socket
import ssl
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from dicomtls.net.association import associate
from dicomtls.tls.flags import VerifyFlags
from dicomtls.tls.settings import TLSSettings

from ..cli.test_node_cli import Node
from ..conftest import MatrixPKI
from ..live_lines import LiveLines

AE = "HOSTILE"
MUTUAL = VerifyFlags.PEER | VerifyFlags.FAIL_IF_NO_PEER_CERT
#: The node for attacks that end at once: timeouts no loaded machine comes near.
PATIENT = 15.0
#: The node whose timeouts the tests wait out: short, yet a good client on a loaded machine
#: handshakes, associates and echoes well within them.
HANDSHAKE_TIMEOUT = 3.0
ARTIM_TIMEOUT = 2.0
IDLE_TIMEOUT = 2.0


def peer_name(sock: socket.socket) -> str:
    """How the node names a connection from ``sock``: our local address."""
    host, port = sock.getsockname()[:2]
    return f"{host}:{port}"


class LiveNode:
    """``dicomtls serve`` in a subprocess, its output collected by a thread as it comes."""

    def __init__(self, cwd: Path, *args: str) -> None:
        self._node = Node(cwd, *args)  # returns once the node says "listening on"
        self.port = self._node.port
        self.proc = self._node.proc
        self.store = Path(args[args.index("--store") + 1]) if "--store" in args else None
        assert self.proc.stdout is not None
        self._live = LiveLines(self.proc.stdout, self._node.output)
        self.lines, self._changed = self._live.lines, self._live.changed
        self.hostile: dict[str, int] = {}
        """Peers whose connection must have produced this many log lines (one, mostly)."""

    def naming(self, peer: str) -> list[str]:
        """The log lines (WARNING and worse) that name ``peer``."""
        pattern = re.compile(re.escape(peer) + r"(?!\d)")
        with self._changed:
            return [
                line
                for line in self.lines
                if re.search(r" (WARNING|ERROR|CRITICAL) dicomtls", line) and pattern.search(line)
            ]

    def wait_for(self, peer: str, timeout: float = 20) -> str:
        """The first log line naming ``peer`` (waits for it, with a deadline)."""
        return self.wait_for_lines(peer, 1, timeout)[0]

    def wait_for_lines(self, peer: str, count: int, timeout: float = 20) -> list[str]:
        """The ``count`` log lines naming ``peer``, the most its connection may produce."""
        self.hostile[peer] = count
        deadline = time.monotonic() + timeout
        with self._changed:
            while len(found := self.naming(peer)) < count:
                left = deadline - time.monotonic()
                if left <= 0 or self.proc.poll() is not None:
                    raise AssertionError(
                        f"{len(found)} of {count} log lines name {peer}:\n" + "".join(self.lines)
                    )
                self._changed.wait(left)
        return found

    def output(self) -> str:
        with self._changed:
            return "".join(self.lines)

    def rss_kib(self) -> int:
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
        raise AssertionError("no VmRSS")

    def stop(self) -> str:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._live.join(timeout=10)
        return self.output()

    def check_one_line_each(self) -> None:
        """Every hostile peer got exactly its lines (one, mostly); nothing crashed."""
        text = self.output()
        assert "Traceback" not in text, text
        assert " ERROR " not in text, text
        for peer, count in sorted(self.hostile.items()):
            lines = self.naming(peer)
            assert len(lines) == count, (peer, lines)


@pytest.fixture(scope="session")
def client_tls(matrix_pki: MatrixPKI) -> TLSSettings:
    return matrix_pki.settings("client", MUTUAL)


def _tls_args(pki: MatrixPKI, *, crl: bool = True) -> list[str]:
    """The node's TLS options: the matrix server certificate, our CA, and its CRL unless
    ``crl`` is False (a test about what a certificate itself says, not its revocation)."""
    server = pki.files["server"]
    args = ["--tls-cert", str(server.cert), "--tls-key", str(server.key), "--ca", str(pki.ca_file)]
    return [*args, "--crl", str(pki.crl_file)] if crl else args


def _timeouts(handshake: float, artim: float, idle: float) -> list[str]:
    return [
        "--handshake-timeout",
        str(handshake),
        "--artim-timeout",
        str(artim),
        "--idle-timeout",
        str(idle),
    ]


def start(tmp: Path, *args: str) -> LiveNode:
    return LiveNode(tmp, "--ae-title", AE, "--store", str(tmp / "store"), *args)


def _running(node: LiveNode) -> Iterator[LiveNode]:
    try:
        yield node
    finally:
        node.stop()
    node.check_one_line_each()


@pytest.fixture(scope="session")
def tls_node(matrix_pki: MatrixPKI, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveNode]:
    """A mutual-TLS node with a CRL, for attacks it must end by itself, at once."""
    tmp = tmp_path_factory.mktemp("tls-node")
    yield from _running(start(tmp, *_tls_args(matrix_pki), *_timeouts(PATIENT, PATIENT, PATIENT)))


@pytest.fixture(scope="session")
def slow_tls_node(
    matrix_pki: MatrixPKI, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LiveNode]:
    """The same node with short timeouts, for peers that say too little or too slowly."""
    tmp = tmp_path_factory.mktemp("slow-tls-node")
    config = tmp / "node.toml"  # the timeouts as an operator's node.toml gives them
    config.write_text(f"artim_timeout = {ARTIM_TIMEOUT}\nidle_timeout = {IDLE_TIMEOUT}\n")
    args = ["--handshake-timeout", str(HANDSHAKE_TIMEOUT), "--config", str(config)]
    yield from _running(start(tmp, *_tls_args(matrix_pki), *args))


@pytest.fixture(scope="session")
def plain_node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveNode]:
    """A --no-tls node (short timeouts), for TLS and HTTP peers on a plain port."""
    tmp = tmp_path_factory.mktemp("plain-node")
    args = _timeouts(HANDSHAKE_TIMEOUT, ARTIM_TIMEOUT, IDLE_TIMEOUT)
    yield from _running(start(tmp, "--no-tls", *args))


async def good_echo(port: int, tls: TLSSettings | None) -> int:
    """A well-behaved client: associate (mutual TLS unless ``tls`` is None), C-ECHO, release."""
    async with await associate(
        "127.0.0.1", port, tls, called_ae=AE, calling_ae="GOOD", dimse_timeout=30
    ) as assoc:
        return await assoc.echo()


def echo_now(port: int, tls: TLSSettings | None) -> int:
    return asyncio.run(good_echo(port, tls))


@pytest.fixture(scope="session")
def scp_context(matrix_pki: MatrixPKI) -> ssl.SSLContext:
    """The TLS server side of a hostile SCP (tests/hostile/scp.py): the matrix server
    certificate, our client's certificate required."""
    server = matrix_pki.files["server"]
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(server.cert, server.key)
    context.load_verify_locations(matrix_pki.ca_file)
    context.verify_mode = ssl.CERT_REQUIRED
    return context
