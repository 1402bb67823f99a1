"""A real rsyslogd as the audit collector: UDP and mutual-TLS listeners on loopback.

It runs in the foreground with its own configuration, pid file and work directory, loads no
system inputs (no imuxsock, no imklog) and never reads /etc/rsyslog.conf, so it coexists with
whatever syslog daemon the machine has. Each listener writes every received message as one
tab-separated line: the RFC 5424 header fields as rsyslog parsed them, then the MSG.

Readiness and delivery are waited for on observables (a port that accepts, a line in a file),
each with a deadline; there are no sleeps standing in for synchronisation.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import ssl
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from dicomtls.pki import CertificateAuthority, KeySpec

FIELDS = ("pri", "facility", "severity", "app_name", "msgid", "procid", "hostname", "msg")
_TEMPLATE = (
    "\\t".join(
        f"%{name}%"
        for name in (
            "pri",
            "syslogfacility",
            "syslogseverity",
            "app-name",
            "msgid",
            "procid",
            "hostname",
            "msg",
        )
    )
    + "\\n"
)


@dataclass(frozen=True)
class Received:
    """One message as rsyslog parsed it."""

    pri: str
    facility: str
    severity: str
    app_name: str
    msgid: str
    procid: str
    hostname: str
    msg: str

    @property
    def payload(self) -> str:
        """The MSG without the UTF-8 BOM RFC 5424 puts in front of it."""
        return self.msg.lstrip(" ").removeprefix("\ufeff")


@dataclass(frozen=True)
class AuditPKI:
    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path
    stranger_cert: Path
    """A client certificate from a CA the collector does not trust."""
    stranger_key: Path


@dataclass
class Rsyslog:
    process: subprocess.Popen[bytes]
    directory: Path
    udp_port: int
    tls_port: int
    udp_log: Path
    tls_log: Path
    stderr: Path
    """rsyslogd's own messages (in the foreground they go to stderr), e.g. refused peers."""

    def received(self, log: Path) -> list[Received]:
        if not log.exists():
            return []
        lines = log.read_text(encoding="utf-8", errors="replace").splitlines()
        return [Received(*line.split("\t", len(FIELDS) - 1)) for line in lines if line]

    def wait_for(
        self, log: Path, match: Callable[[Received], bool], count: int, timeout: float = 15.0
    ) -> list[Received]:
        """Poll ``log`` until ``count`` matching lines are there (or fail at the deadline)."""
        deadline = time.monotonic() + timeout
        while True:
            found = [r for r in self.received(log) if match(r)]
            if len(found) >= count or time.monotonic() > deadline:
                return found
            self.check_alive()
            time.sleep(0.05)  # polling interval of an observable, not a synchronisation guess

    def check_alive(self) -> None:
        if self.process.poll() is not None:
            pytest.fail(f"rsyslogd exited ({self.process.returncode}): {self.stderr_text()}")

    def stderr_text(self) -> str:
        return self.stderr.read_text(errors="replace") if self.stderr.exists() else ""


def free_port(kind: int = socket.SOCK_STREAM) -> int:
    with socket.socket(socket.AF_INET, kind) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def make_pki(directory: Path) -> AuditPKI:
    """RSA certificates from the project's own test CA (rsyslog's ossl driver takes RSA)."""
    rsa = KeySpec.rsa(2048)
    root = CertificateAuthority.create("dicomtls Audit Test CA", key=rsa)
    ca = directory / "ca.pem"
    root.write_cert(ca)
    server = root.issue("localhost", dns=["localhost"], ips=["127.0.0.1"], key=rsa).write(
        directory, "collector"
    )
    client = root.issue("dicomtls-node", dns=["localhost"], key=rsa).write(directory, "node")
    other = CertificateAuthority.create("Some Other CA", key=rsa)
    stranger = other.issue("stranger", dns=["localhost"], key=rsa).write(directory, "stranger")
    return AuditPKI(
        ca=ca,
        server_cert=server.chain,
        server_key=server.key,
        client_cert=client.chain,
        client_key=client.key,
        stranger_cert=stranger.chain,
        stranger_key=stranger.key,
    )


def _config(directory: Path, pki: AuditPKI, udp_port: int, tls_port: int) -> str:
    work = directory / "work"
    work.mkdir(exist_ok=True)
    return f"""
global(
  workDirectory="{work}"
  maxMessageSize="64k"
  DefaultNetstreamDriverCAFile="{pki.ca}"
  DefaultNetstreamDriverCertFile="{pki.server_cert}"
  DefaultNetstreamDriverKeyFile="{pki.server_key}"
)
module(load="imudp")
module(load="imtcp" StreamDriver.Name="ossl" StreamDriver.Mode="1"
       StreamDriver.AuthMode="x509/certvalid")

template(name="fields" type="string" string="{_TEMPLATE}")

ruleset(name="udp") {{
  action(type="omfile" file="{directory / "udp.log"}" template="fields")
}}
ruleset(name="tls") {{
  action(type="omfile" file="{directory / "tls.log"}" template="fields")
}}
input(type="imudp" address="127.0.0.1" port="{udp_port}" ruleset="udp")
input(type="imtcp" address="127.0.0.1" port="{tls_port}" ruleset="tls")
"""


def _wait_tls(server: Rsyslog, pki: AuditPKI, deadline: float) -> bool:
    """Wait until the TLS port completes a mutual handshake with our collector certificate;
    False if something else answers there: the port was taken between choosing it and
    rsyslogd binding it (rsyslogd then runs on, without that listener)."""
    context = ssl.create_default_context(cafile=str(pki.ca))
    context.load_cert_chain(str(pki.client_cert), str(pki.client_key))
    while True:
        server.check_alive()
        try:
            with (
                socket.create_connection(("127.0.0.1", server.tls_port), timeout=5) as raw,
                context.wrap_socket(raw, server_hostname="localhost"),
            ):
                return True
        except ConnectionRefusedError:
            pass  # not listening yet
        except OSError:  # ssl.SSLError among them: another server, TLS or not
            return False
        if time.monotonic() > deadline:
            pytest.fail(f"rsyslogd TLS port never accepted: {server.stderr_text()}")
        time.sleep(0.05)


def _wait_udp(server: Rsyslog, deadline: float) -> bool:
    """Wait until a probe sent to the UDP port is logged; False if it never is (the port was
    taken: another program gets the probes)."""
    marker = f"probe-{uuid.uuid4().hex}"
    probe = f"<13>1 - localhost probe - - - {marker}".encode()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        while time.monotonic() < deadline:
            server.check_alive()
            sock.sendto(probe, ("127.0.0.1", server.udp_port))
            if server.wait_for(server.udp_log, lambda r: marker in r.msg, 1, timeout=0.2):
                return True
    return False


@contextlib.contextmanager
def running_rsyslog(
    directory: Path, pki: AuditPKI, *, tls_port: int | None = None
) -> Iterator[Rsyslog]:
    """rsyslogd on free ports (``tls_port`` if given), ready on both listeners. A port taken
    by another program before rsyslogd binds it is found out, and rsyslogd started again on
    others (a given ``tls_port`` is the test's to keep: then it fails)."""
    for _attempt in range(5):
        server = _start(directory, pki, tls_port)
        try:
            deadline = time.monotonic() + 30
            if _wait_tls(server, pki, deadline) and _wait_udp(server, deadline):
                yield server
                return
        finally:
            _stop(server.process)
        if tls_port is not None:
            break
    pytest.fail(f"rsyslogd found its ports taken: {server.stderr_text()}")


def _start(directory: Path, pki: AuditPKI, tls_port: int | None) -> Rsyslog:
    binary = shutil.which("rsyslogd") or "/usr/sbin/rsyslogd"
    if not os.path.exists(binary):
        pytest.fail("rsyslogd is not installed (scripts/setup.sh installs rsyslog)")
    udp_port, tls_port = free_port(socket.SOCK_DGRAM), tls_port or free_port()
    for stale in ("udp.log", "tls.log", "rsyslog.pid"):
        (directory / stale).unlink(missing_ok=True)
    conf = directory / "rsyslog.conf"
    conf.write_text(_config(directory, pki, udp_port, tls_port))
    stderr = directory / "rsyslogd.stderr"
    with stderr.open("wb") as err:
        process = subprocess.Popen(
            [binary, "-n", "-f", str(conf), "-i", str(directory / "rsyslog.pid")],
            stdin=subprocess.DEVNULL,
            stdout=err,
            stderr=err,
            start_new_session=True,
        )
    return Rsyslog(
        process, directory, udp_port, tls_port, directory / "udp.log", directory / "tls.log", stderr
    )


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)


@pytest.fixture(scope="session")
def audit_pki(tmp_path_factory: pytest.TempPathFactory) -> AuditPKI:
    return make_pki(tmp_path_factory.mktemp("audit-pki"))


@pytest.fixture(scope="session")
def rsyslog(tmp_path_factory: pytest.TempPathFactory, audit_pki: AuditPKI) -> Iterator[Rsyslog]:
    with running_rsyslog(tmp_path_factory.mktemp("rsyslog"), audit_pki) as server:
        yield server
