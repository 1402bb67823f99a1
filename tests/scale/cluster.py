"""Nodes behind HAProxy for the scale-out tests and the benchmark: real processes, real servers.

A :class:`Cluster` runs ``dicomtls serve`` N times (each a process of its own, killable with
SIGKILL and restartable with the same command), HAProxy in front of them (``mode tcp``,
``balance leastconn``, ``send-proxy-v2``, health checks on ``/healthz``), and one listener
per node for tests that must reach a given node through the proxy. HAProxy connects to the
nodes from 127.0.0.9 (its ``source``): the only trusted proxy, so a node that logs or
audits 127.0.0.9 has taken the balancer for the client.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from ..node.site import Site
from ..servers import HAProxy, free_port, start_haproxy, wait_for

EXE = str(Path(sys.executable).with_name("dicomtls"))
PROXY_SOURCE = "127.0.0.9"


@dataclass
class NodeProcess:
    """One ``dicomtls serve``; its output goes to ``log`` (read, never piped and forgotten)."""

    name: str
    args: list[str]
    folder: Path
    env: dict[str, str]
    port: int
    metrics_port: int
    proc: subprocess.Popen[bytes] | None = None
    starts: int = 0
    pids: list[int] = field(default_factory=list)
    """Every process this node has run as (an S3 key names the PID that stored it)."""

    @property
    def log(self) -> Path:
        return self.folder / f"serve-{self.starts}.log"

    def start(self) -> None:
        self.starts += 1
        with open(self.log, "wb") as out:
            self.proc = subprocess.Popen(
                [EXE, "serve", *self.args],
                stdout=out,
                stderr=subprocess.STDOUT,
                env=self.env,
                cwd=self.folder,
            )
        self.pids.append(self.proc.pid)
        wait_for(
            lambda: "listening on" in self.log.read_text(errors="replace"),
            f"node {self.name}",
            proc=self.proc,
        )

    def kill(self) -> None:
        """SIGKILL: no handler runs, nothing is flushed or closed."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def connections(self) -> int:
        """Established TCP connections to its DICOM port (the kernel's table, not a guess)."""
        count = 0
        for table in ("/proc/net/tcp", "/proc/net/tcp6"):
            for line in Path(table).read_text().splitlines()[1:]:
                local, state = line.split()[1], line.split()[3]
                if state == "01" and int(local.rsplit(":", 1)[1], 16) == self.port:
                    count += 1
        return count

    def output(self) -> str:
        return "".join(
            (self.folder / f"serve-{n}.log").read_text(errors="replace")
            for n in range(1, self.starts + 1)
        )


@dataclass
class Cluster:
    nodes: list[NodeProcess]
    haproxy: HAProxy
    port: int
    """HAProxy's balanced frontend."""
    via: dict[str, int] = field(default_factory=dict)
    """Node name -> an HAProxy listener that reaches that node only (PROXY v2 too)."""

    def stop(self) -> None:
        self.haproxy.stop()
        for node in self.nodes:
            node.stop()


def haproxy_config(nodes: list[NodeProcess], port: int, via: dict[str, int]) -> str:
    servers = "\n".join(
        f"    server {n.name} 127.0.0.1:{n.port} send-proxy-v2 check port {n.metrics_port}"
        for n in nodes
    )
    singles = "\n".join(
        f"listen via_{n.name}\n    bind 127.0.0.1:{via[n.name]}\n"
        f"    server {n.name} 127.0.0.1:{n.port} send-proxy-v2\n"
        for n in nodes
    )
    return f"""global
    maxconn 2000

defaults
    mode tcp
    timeout connect 2s
    timeout client 120s
    timeout server 120s
    source {PROXY_SOURCE}

frontend dicom
    bind 127.0.0.1:{port}
    default_backend nodes

backend nodes
    balance leastconn
    option httpchk GET /healthz
    http-check expect status 200
    default-server inter 300ms fall 2 rise 2
{servers}

{singles}"""


def node_args(
    site: Site,
    folder: Path,
    port: int,
    metrics_port: int,
    *extra: str,
    proxy: bool = True,
    ae_title: str = "PACS",
) -> list[str]:
    args = [
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--store",
        str(folder / "store"),
        "--ae-title",
        ae_title,
        *site.tls_args("pacs"),
        "--metrics-port",
        str(metrics_port),
        "--audit",
        f"file:{folder / 'audit.log'}",
        "--max-per-peer",
        "100",
    ]
    if proxy:
        args += ["--trusted-proxy", f"{PROXY_SOURCE}/32"]
    return [*args, *extra]


def start_viewer(site: Site, folder: Path) -> NodeProcess:
    """A C-MOVE destination: the embedded default, no proxy."""
    folder.mkdir(parents=True)
    port = free_port()
    viewer = NodeProcess(
        "viewer",
        node_args(site, folder, port, free_port(), proxy=False, ae_title="VIEWER"),
        folder,
        {**os.environ, "COLUMNS": "200"},
        port,
        0,
    )
    viewer.start()
    return viewer


def start_cluster(
    site: Site, folder: Path, count: int, *extra: str, env: dict[str, str] | None = None
) -> Cluster:
    """``count`` nodes with ``extra`` serve arguments, behind one HAProxy."""
    environment = {**os.environ, **(env or {}), "COLUMNS": "200"}
    nodes = []
    for n in range(count):
        name = "abcdefgh"[n]
        where = folder / f"node-{name}"
        where.mkdir(parents=True, exist_ok=True)
        port, metrics = free_port(), free_port()
        node = NodeProcess(
            name, node_args(site, where, port, metrics, *extra), where, environment, port, metrics
        )
        nodes.append(node)
    try:
        for node in nodes:
            node.start()
        port = free_port()
        via = {node.name: free_port() for node in nodes}
        haproxy = start_haproxy(folder, haproxy_config(nodes, port, via), port)
    except Exception:
        for node in nodes:
            node.stop()
        raise
    cluster = Cluster(nodes, haproxy, port, via)
    _until_all_up(cluster)
    return cluster


def _until_all_up(cluster: Cluster, timeout: float = 20) -> None:
    """HAProxy has marked every node up (its log says so, or no node was ever down)."""
    deadline = time.monotonic() + timeout
    import urllib.request

    for node in cluster.nodes:
        while True:
            try:
                with urllib.request.urlopen(
                    f"http://127.0.0.1:{node.metrics_port}/healthz", timeout=5
                ) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise TimeoutError(f"node {node.name} not healthy")
            time.sleep(0.1)
