"""Shared peers for the interop tests: an RSA PKI DCMTK accepts, and DCMTK's tools as processes."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import subprocess
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Unpack

import pytest

from dicomtls.pki import BrokenKind, CertificateAuthority, KeySpec
from dicomtls.tls.flags import VerifyFlags
from dicomtls.tls.settings import TLSSettings, VerifyCallback

from ..conftest import TLSOptions

PEER_FAIL = VerifyFlags.PEER | VerifyFlags.FAIL_IF_NO_PEER_CERT


class OurOptions(TLSOptions, total=False):
    """The TLSSettings options a test may add to RsaPKI.ours."""

    on_verify: VerifyCallback | None
    check_hostname: bool


@dataclass
class RsaPKI:
    ca: Path
    files: dict[str, tuple[Path, Path]]  # name -> (certificate chain, key)

    def ours(
        self, name: str | None, verify: VerifyFlags = PEER_FAIL, **extra: Unpack[OurOptions]
    ) -> TLSSettings:
        cert, key = self.files[name] if name else (None, None)
        return TLSSettings(
            certificate=cert,
            private_key=key,
            ca_files=self.ca,
            verify=verify,
            **extra,
        )

    def client_args(self, name: str) -> list[str]:
        """The ``dicomtls`` client options presenting ``name``'s certificate, trusting the CA."""
        cert, key = self.files[name]
        return ["--ca", str(self.ca), "--tls-cert", str(cert), "--tls-key", str(key)]

    def dcmtk_args(self, name: str | None) -> list[str]:
        trust = ["+cf", str(self.ca)]
        if name is None:
            return ["+tla", *trust]
        cert, key = self.files[name]
        return ["+tls", str(key), str(cert), *trust]


@pytest.fixture(scope="module")
def rsa_pki(tmp_path_factory: pytest.TempPathFactory) -> RsaPKI:
    directory = tmp_path_factory.mktemp("rsa-pki")
    rsa = KeySpec.rsa(2048)
    root = CertificateAuthority.create("dicomtls DCMTK Root CA", key=rsa)
    ca = directory / "ca.pem"
    root.write_cert(ca)
    identities = {
        "scp": root.issue("scp", key=rsa, dns=["localhost"], ips=["127.0.0.1"]),
        "scu": root.issue("scu", key=rsa, dns=["localhost"], ips=["127.0.0.1"]),
        "no-purpose": root.issue_broken(BrokenKind("no-purpose"), "no-purpose", key=rsa),
    }
    files = {}
    for name, ident in identities.items():
        written = ident.write(directory, name=name)
        files[name] = (written.chain, written.key)
    return RsaPKI(ca, files)


async def _run_tool(*args: str) -> tuple[int, str]:
    proc = await asyncio.create_subprocess_exec(
        *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
    )
    out, _ = await asyncio.wait_for(proc.communicate(), 60)
    return proc.returncode or 0, out.decode(errors="replace")


def _free_port() -> int:
    """A port free on every address: DCMTK's listeners bind all interfaces, so a port free
    on 127.0.0.1 alone may still be held by a connection from 127.0.0.3 (the hostile tests')."""
    with socket.socket() as probe:
        probe.bind(("", 0))
        return int(probe.getsockname()[1])


async def run_tool(*args: str) -> tuple[int, str]:
    """Run a DCMTK tool to its end; its exit code and combined output."""
    proc = await asyncio.create_subprocess_exec(
        *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
    )
    out, _ = await asyncio.wait_for(proc.communicate(), 60)
    return proc.returncode or 0, out.decode(errors="replace")


@contextlib.contextmanager
def dcmtk_listener(argv_for: Callable[[int], list[str]], log: Path) -> Iterator[int]:
    """Run a DCMTK listener (``argv_for(port)``) and yield its port once it accepts connections.

    The port is chosen free on every address, yet another program may take it before the tool
    binds it; the tool then ends saying "Address already in use" and is started again on another
    port. Its output goes to ``log``, for whoever reads a failure: a pipe nobody reads would stall
    it once full.
    """
    for _attempt in range(5):
        port = _free_port()
        argv = argv_for(port)
        with log.open("wb") as out:
            proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT)
        try:
            if _listening(port, proc):
                yield port
                return
        finally:
            if proc.poll() is None:
                proc.terminate()
            proc.wait()
        if "Address already in use" not in log.read_text(errors="replace"):
            raise AssertionError(f"{argv[0]} ended before listening:\n{log.read_text()}")
    raise AssertionError(f"{argv[0]} found its port taken five times")


def _listening(port: int, proc: subprocess.Popen[bytes]) -> bool:
    """Wait until ``port`` accepts a TCP connection (DCMTK's tools say nothing when ready);
    False if ``proc`` ends first."""
    deadline = time.monotonic() + 20
    while proc.poll() is None:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 1):
            return True
        if time.monotonic() > deadline:
            raise TimeoutError(f"nothing listens on port {port} after 20 s")
        time.sleep(0.05)
    return False


@contextlib.asynccontextmanager
async def storescp(pki: RsaPKI, tmp: Path, *peer_options: str) -> AsyncIterator[int]:
    """storescp with ``pki``'s SCP certificate, writing what it receives into ``tmp``.

    Starting it blocks the event loop for the moment it takes to listen: nothing of the test
    runs yet."""

    def argv(port: int) -> list[str]:
        return ["storescp", "-d", *pki.dcmtk_args("scp"), *peer_options, "-od", str(tmp), str(port)]

    with dcmtk_listener(argv, tmp.with_name(f"{tmp.name}-storescp.log")) as port:
        yield port
