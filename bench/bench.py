"""Side-by-side DICOM-over-TLS benchmark: ours vs DCMTK vs pynetdicom vs raw ceilings (issue 8).

    bash bench/run.sh [--quick] [--reps N] [--large-count N --large-mb S] ...

One run, the same generated Part 10 CT objects for every leg, loopback only. Every peer is a
separate process. Each leg: start the SCP (readiness = its port accepts, bounded), run the SCU,
stop the SCP, then verify what the SCP wrote (object count, every object's size, and the
SHA-256 of every object's pixel data against the source), then delete it. Results go to
bench/results/ (results.json, results.md, results.png).
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import platform
import shutil
import signal
import socket
import statistics
import struct
import subprocess
import sys
import textwrap
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, TypeAlias, TypedDict

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
PY = sys.executable
DICOMTLS = str(Path(PY).with_name("dicomtls"))
CT = "1.2.840.10008.5.1.4.1.1.2"
MB = 1_000_000  # MB/s means 10^6 bytes per second throughout

TLS13_CIPHER = "TLS_AES_256_GCM_SHA384"
TLS12_EC = "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256"
TLS12_RSA = "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256"
DCMTK_PDU = "131072"  # the largest DCMTK 3.6.7 accepts (-pdu 4096..131072)


# A JSON object as a peer prints it and results.json stores it. --replot reads results.json
# back from disk, so these are checked where they are used, not by a declared shape.
JsonObject: TypeAlias = dict[str, Any]
# median / min / max of a list of measurements; empty when nothing was measured
Stats: TypeAlias = dict[str, float]


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


class ObjectEntry(TypedDict):
    """One generated object, as the data set's manifest.json records it."""

    file: str
    bytes: int
    pixel_bytes: int
    pixel_sha256: str


# ----------------------------------------------------------------------------- data
def _write_object(path: Path, size: int, seed: int) -> ObjectEntry:
    """A valid Part 10 CT object whose pixel data (``size`` bytes, distinct per object) is
    streamed to disk in 1 MiB blocks, never held in memory. Returns its manifest entry."""
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import UID, ExplicitVRLittleEndian, generate_uid

    rows = 256
    while size // rows > 65535:
        rows *= 2
    ds = Dataset()
    ds.SOPClassUID, ds.SOPInstanceUID = UID(CT), generate_uid()
    ds.PatientName, ds.PatientID = "Bench^Object", f"BENCH{seed}"
    ds.Rows, ds.Columns, ds.BitsAllocated, ds.SamplesPerPixel = rows, size // rows, 8, 1
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.MediaStorageSOPClassUID = UID(CT)
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.save_as(path, enforce_file_format=True)
    base = bytearray(bytes(range(256)) * 4096)  # 1 MiB
    digest = hashlib.sha256()
    with path.open("ab") as handle:
        handle.write(struct.pack("<HH2sHI", 0x7FE0, 0x0010, b"OB", 0, size))
        left, block_no = size, 0
        while left:
            struct.pack_into("<QQ", base, 0, seed, block_no)  # every block of every object differs
            chunk = memoryview(base)[: min(left, len(base))]
            handle.write(chunk)
            digest.update(chunk)
            left -= len(chunk)
            block_no += 1
    return {
        "file": path.name,
        "bytes": path.stat().st_size,
        "pixel_bytes": size,
        "pixel_sha256": digest.hexdigest(),
    }


@dataclass
class DataSet:
    name: str
    directory: Path
    objects: list[ObjectEntry]

    @property
    def total_bytes(self) -> int:
        return sum(o["bytes"] for o in self.objects)

    @property
    def count(self) -> int:
        return len(self.objects)


def make_dataset(work: Path, name: str, count: int, size: int) -> DataSet:
    directory = work / "data" / f"{name}-{count}x{size}"
    manifest = directory / "manifest.json"
    if manifest.exists():
        objects: list[ObjectEntry] = json.loads(manifest.read_text())
        if len(objects) == count:
            return DataSet(name, directory, objects)
    shutil.rmtree(directory, ignore_errors=True)
    directory.mkdir(parents=True)
    log(f"generating {count} x {size / MB:.3f} MB objects in {directory}")
    objects = [_write_object(directory / f"obj{i:05d}.dcm", size, i) for i in range(count)]
    manifest.write_text(json.dumps(objects))
    return DataSet(name, directory, objects)


def verify(root: Path, ds: DataSet) -> None:
    """Every object arrived: right count, each file at least its source's size, and the
    multiset of pixel-data SHA-256 (the last pixel_bytes of each file) equals the source's."""
    skip = ("index.sqlite", ".partial", ".tmp")
    files = [
        p
        for p in root.rglob("*")
        if p.is_file()
        and not p.name.endswith(skip)
        and "index.sqlite" not in p.name
        and "pki" not in p.parts
    ]
    if len(files) != ds.count:
        raise RuntimeError(f"verify {root}: {len(files)} files, expected {ds.count}")
    size = ds.objects[0]["pixel_bytes"]
    want = sorted(o["pixel_sha256"] for o in ds.objects)
    got = []
    for path in files:
        n = path.stat().st_size
        if n < size:
            raise RuntimeError(f"verify {path}: {n} bytes < pixel data {size}")
        digest = hashlib.sha256()
        with path.open("rb") as handle:
            handle.seek(n - size)
            while chunk := handle.read(4 << 20):
                digest.update(chunk)
        got.append(digest.hexdigest())
    if sorted(got) != want:
        raise RuntimeError(f"verify {root}: pixel data differs from what was sent")


def src_fingerprint() -> str:
    """SHA-256 (12 hex) of every file under src/: other people edit src/ while this runs, and
    each peer process imports whatever is there when it starts."""
    digest = hashlib.sha256()
    for path in sorted((REPO / "src").rglob("*.py")):
        digest.update(str(path.relative_to(REPO)).encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:12]


def git_state() -> str:
    def git(*a: str) -> str:
        done = subprocess.run(["git", *a], capture_output=True, text=True, cwd=REPO)
        return done.stdout.strip()

    dirty = git("status", "--porcelain", "--", "src")
    return f"{git('rev-parse', '--short', 'HEAD')}{' + uncommitted src changes' if dirty else ''}"


# ----------------------------------------------------------------------------- PKI
def make_pki(work: Path) -> dict[str, Path]:
    from dicomtls.pki import CertificateAuthority
    from dicomtls.pki.authority import KeySpec

    out: dict[str, Path] = {}
    for kind, spec in (("ec", KeySpec.ec()), ("rsa", KeySpec.rsa(2048))):
        d = work / f"pki-{kind}"
        out[kind] = d
        if (d / "client.key").exists():
            continue
        root = CertificateAuthority.create(f"Bench {kind.upper()} Root", key=spec)
        root.write_cert(d / "ca.pem")
        for name in ("server", "client"):
            root.issue(name, ips=["127.0.0.1"], key=spec).write(d, name)
    return out


def openssl_conf(work: Path, tls: str) -> Path:
    """An OPENSSL_CONF for the DCMTK processes: DCMTK 3.6.7 has no TLS-version option, so
    TLS 1.2 is forced with MaxProtocol and TLS 1.3 pinned to AES-256-GCM with Ciphersuites."""
    path = work / f"openssl-{tls}.cnf"
    line = "MaxProtocol = TLSv1.2" if tls == "tls12" else "Ciphersuites = TLS_AES_256_GCM_SHA384"
    path.write_text(
        "openssl_conf = init\n[init]\nssl_conf = ssl_sect\n[ssl_sect]\n"
        f"system_default = sys_sect\n[sys_sect]\n{line}\n"
    )
    return path


# ----------------------------------------------------------------------------- processes
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_port(port: int, proc: subprocess.Popen[str], timeout: float = 30.0) -> None:
    """Bounded retry until the port accepts a TCP connection (or the process died)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"SCP exited with {proc.returncode} before listening")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            time.sleep(0.02)  # retry interval of the bounded readiness poll
    raise RuntimeError(f"port {port} not accepting after {timeout}s")


def wait_line(proc: subprocess.Popen[str], expect: str, timeout: float = 60.0) -> None:
    assert proc.stdout is not None
    import selectors

    sel = selectors.DefaultSelector()
    sel.register(proc.stdout, selectors.EVENT_READ)
    if not sel.select(timeout):
        head = proc.args[:3] if isinstance(proc.args, list) else proc.args
        raise RuntimeError(f"no {expect!r} from {head!r} after {timeout}s")
    line = proc.stdout.readline()
    if expect not in line:
        raise RuntimeError(f"expected {expect!r}, got {line!r} (exit {proc.poll()})")


def stop(proc: subprocess.Popen[str]) -> None:
    if proc.poll() is None:
        if proc.stdin is not None:
            with contextlib.suppress(OSError):
                proc.stdin.close()
        proc.send_signal(signal.SIGINT if proc.stdin is not None else signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def serve_cmd(kind: str, recv: Path, port: int, pki: Path, *extra: str) -> list[str]:
    """``dicomtls serve`` as the benchmark runs our SCP: ``ours-durable`` fsyncs every object."""
    return [
        DICOMTLS,
        "serve",
        "--store",
        str(recv),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--fsync",
        "always" if kind == "ours-durable" else "never",
        "--tls-cert",
        str(pki / "server-chain.pem"),
        "--tls-key",
        str(pki / "server.key"),
        "--ca",
        str(pki / "ca.pem"),
        *extra,
    ]


def storescu_cmd(pki: Path, called_ae: str) -> list[str]:
    """DCMTK's storescu over mutual TLS with our client certificate and the tuned PDU size;
    the caller adds its options, the address and the files."""
    return [
        "storescu",
        "+tls",
        str(pki / "client.key"),
        str(pki / "client-chain.pem"),
        "+cf",
        str(pki / "ca.pem"),
        "-pdu",
        DCMTK_PDU,
        "-aec",
        called_ae,
    ]


def peer_cmd(script: str, *command: str, port: int, directory: Path, pki: Path | None) -> list[str]:
    """One of the bench's peer scripts sending ``directory`` to ``port`` (over TLS with the
    client certificate under ``pki``, if given)."""
    cmd = [PY, str(HERE / script), *command, "--port", str(port), "--dir", str(directory)]
    return cmd if pki is None else [*cmd, "--pki", str(pki)]


def run_json(cmd: list[str], timeout: float, env: dict[str, str] | None = None) -> JsonObject:
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=REPO, env=env)
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if done.returncode != 0 or not lines:
        raise RuntimeError(f"{cmd[:4]} failed ({done.returncode}): {done.stderr[-2000:]}")
    result: JsonObject = json.loads(lines[-1])
    return result


# ----------------------------------------------------------------------------- legs
@dataclass
class Leg:
    key: str
    label: str
    scp: str  # ours-durable | ours-relaxed | dcmtk | pynetdicom | raw-tls | raw-tcp | disk-fsync | disk-cache
    scu: str  # ours | dcmtk | pynetdicom | raw | disk
    pki: str  # ec | rsa


LEGS = [
    Leg("ours_durable", "ours -> ours (durable, fsync)", "ours-durable", "ours", "ec"),
    Leg("ours_sync", "ours -> ours (durable, window 1)", "ours-durable", "ours", "ec"),
    Leg("ours_relaxed", "ours -> ours (--fsync never)", "ours-relaxed", "ours", "ec"),
    Leg(
        "dcmtk_nodelay",
        "DCMTK tuned: TCP_NODELAY=1, -pdu 131072, storescp +B",
        "dcmtk",
        "dcmtk",
        "rsa",
    ),
    Leg("dcmtk", "DCMTK as Debian ships it (Nagle on)", "dcmtk", "dcmtk", "rsa"),
    Leg("pynetdicom", "pynetdicom -> pynetdicom", "pynetdicom", "pynetdicom", "ec"),
    Leg("ours_to_dcmtk", "ours -> DCMTK storescp", "dcmtk", "ours", "rsa"),
    Leg("dcmtk_to_ours", "DCMTK storescu -> ours (durable)", "ours-durable", "dcmtk", "rsa"),
    Leg("raw_tls", "raw Python ssl socket pair", "raw-tls", "raw", "ec"),
    Leg("raw_tcp", "raw plain TCP", "raw-tcp", "raw", "ec"),
    Leg("disk_fsync", "disk: write + fsync per object", "disk-fsync", "disk", "ec"),
    Leg("disk_cache", "disk: write, no fsync (page cache)", "disk-cache", "disk", "ec"),
]


class Bench:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.work = Path(args.workdir)
        self.work.mkdir(parents=True, exist_ok=True)
        self.pki = make_pki(self.work)
        self.recv_root = self.work / "recv"  # where every SCP writes, and the disk test too
        self.logs = self.work / "logs"
        self.logs.mkdir(exist_ok=True)

    def _timeout(self, ds: DataSet) -> float:
        return 120 + ds.total_bytes / (2 * MB) + ds.count * 0.2

    def env(self, leg: Leg, tls: str) -> dict[str, str]:
        """The environment of the DCMTK processes: OPENSSL_CONF pins the TLS version/suite.
        DCMTK (dcmnet) leaves Nagle's algorithm on unless the environment variable
        TCP_NODELAY is set to 1; the `dcmtk` leg runs DCMTK as installed (variable unset),
        `dcmtk_nodelay` with TCP_NODELAY=1 (tuned DCMTK)."""
        env = dict(os.environ, OPENSSL_CONF=str(openssl_conf(self.work, tls)))
        env.pop("TCP_NODELAY", None)
        if leg.key.endswith("_nodelay"):
            env["TCP_NODELAY"] = "1"
        return env

    def cipher(self, leg: Leg, tls: str) -> str:
        tls12 = TLS12_RSA if leg.pki == "rsa" else TLS12_EC
        # TLS 1.3 only offers AES-256-GCM; the TLS 1.2 suite is listed too because a
        # TLS-1.3-only cipher override raises in src/dicomtls/tls/context.py (see README).
        return f"{TLS13_CIPHER},{tls12}" if tls == "tls13" else tls12

    def run(self, leg: Leg, ds: DataSet, tls: str) -> JsonObject:
        recv = self.recv_root / leg.key
        shutil.rmtree(recv, ignore_errors=True)
        recv.mkdir(parents=True)
        os.sync()  # untimed: no leg pays for the write-back of an earlier leg's dirty pages
        if leg.scu == "disk":
            result = self._disk(ds, recv, fsync=leg.scp == "disk-fsync")
            shutil.rmtree(recv, ignore_errors=True)
            return result
        pki = self.pki[leg.pki]
        port = free_port()
        env = self.env(leg, tls)
        logf = (self.logs / f"{leg.key}-{ds.name}-{tls}.log").open("w")
        scp = self._start_scp(leg, tls, pki, port, recv, ds, env, logf)
        check_root = recv / "objects" if leg.scp.startswith("ours") else recv
        try:
            result = self._run_scu(leg, tls, pki, port, ds, env)
        finally:
            stop(scp)
            logf.close()
        if leg.scu != "raw":
            if result.get("failed"):
                raise RuntimeError(f"{leg.key}: {result['failed']} stores failed")
            verify(check_root, ds)
        shutil.rmtree(recv, ignore_errors=True)
        return result

    def probe_dcmtk_cipher(self, leg: Leg, ds: DataSet, tls: str) -> str | None:
        """What a DCMTK storescu negotiates with this leg's SCP: one untimed object with
        ``storescu -d`` (its TLS details) into a scratch directory, before the timed reps."""
        pki = self.pki[leg.pki]
        port = free_port()
        env = self.env(leg, tls)
        scratch = self.recv_root / f"probe-{leg.key}"
        shutil.rmtree(scratch, ignore_errors=True)
        scratch.mkdir(parents=True)
        with (self.logs / f"probe-{leg.key}-{tls}.log").open("w") as logf:
            scp = self._start_scp(leg, tls, pki, port, scratch, ds, env, logf)
            try:
                called = "STORESCP" if leg.scp == "dcmtk" else "DICOMTLS"
                done = subprocess.run(
                    [
                        "storescu",
                        "-d",
                        "+tls",
                        str(pki / "client.key"),
                        str(pki / "client-chain.pem"),
                        "+cf",
                        str(pki / "ca.pem"),
                        "-aec",
                        called,
                        "127.0.0.1",
                        str(port),
                        str(ds.directory / ds.objects[0]["file"]),
                    ],
                    capture_output=True,
                    text=True,
                    timeout=120,
                    env=env,
                )
            finally:
                stop(scp)
        shutil.rmtree(scratch, ignore_errors=True)
        proto = suite = None
        for line in (done.stdout + done.stderr).splitlines():
            if "Protocol    :" in line:
                proto = line.split("Protocol    :", 1)[1].strip()
            if "Ciphersuite :" in line:
                suite = line.split("Ciphersuite :", 1)[1].split(",")[0].strip()
        return f"{proto} {suite}" if proto and suite else None

    def _start_scp(
        self,
        leg: Leg,
        tls: str,
        pki: Path,
        port: int,
        recv: Path,
        ds: DataSet | None,
        env: dict[str, str],
        logf: IO[str],
    ) -> subprocess.Popen[str]:
        """Start this leg's SCP and wait until it listens. ``ds`` is only read by the raw
        receiver (it counts the bytes to expect); the DICOM SCPs take whatever arrives."""
        if leg.scp.startswith("ours"):
            cmd = serve_cmd(leg.scp, recv, port, pki)
            proc = subprocess.Popen(cmd, stdout=logf, stderr=subprocess.STDOUT, cwd=REPO, text=True)
            wait_port(port, proc)
            return proc
        if leg.scp in ("dcmtk", "dcmtk-fork"):
            cmd = [
                "storescp",
                *(["--fork"] if leg.scp == "dcmtk-fork" else []),
                "+tls",
                str(pki / "server.key"),
                str(pki / "server-chain.pem"),
                "+cf",
                str(pki / "ca.pem"),
                "--require-peer-cert",
                "+B",
                "-od",
                str(recv),
                "-pdu",
                DCMTK_PDU,
                "--aetitle",
                "STORESCP",
                str(port),
            ]
            proc = subprocess.Popen(cmd, stdout=logf, stderr=subprocess.STDOUT, env=env, text=True)
            wait_port(port, proc)
            return proc
        if leg.scp == "pynetdicom":
            cmd = [
                PY,
                str(HERE / "peer_pynetdicom.py"),
                "scp",
                "--port",
                str(port),
                "--out",
                str(recv),
                "--pki",
                str(pki),
            ] + (["--tls12"] if tls == "tls12" else [])
        else:  # raw-tls / raw-tcp
            if ds is None:
                raise ValueError(f"{leg.key}: the raw receiver needs the data set it will count")
            cmd = [
                PY,
                str(HERE / "peer_raw.py"),
                "recv",
                "--port",
                str(port),
                "--total",
                str(ds.total_bytes),
            ]
            if leg.scp == "raw-tls":
                cmd += ["--pki", str(pki)] + (["--tls12"] if tls == "tls12" else [])
        proc = subprocess.Popen(
            cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=logf, text=True, cwd=REPO
        )
        wait_line(proc, "ready")
        return proc

    def _run_scu(
        self, leg: Leg, tls: str, pki: Path, port: int, ds: DataSet, env: dict[str, str]
    ) -> JsonObject:
        timeout = self._timeout(ds)
        if leg.scu == "ours":
            called = "STORESCP" if leg.scp == "dcmtk" else "DICOMTLS"
            # as `dicomtls store` does: an asynchronous operations window of 16 if the SCP
            # grants it (ours does, DCMTK and pynetdicom do not); ours_sync asks for none
            window = "1" if leg.key == "ours_sync" else "16"
            return run_json(
                [
                    *peer_cmd("peer_ours_scu.py", port=port, directory=ds.directory, pki=pki),
                    "--cipher",
                    self.cipher(leg, tls),
                    "--called-ae",
                    called,
                    "--window",
                    window,
                ],
                timeout,
            )
        if leg.scu == "pynetdicom":
            return run_json(
                peer_cmd("peer_pynetdicom.py", "scu", port=port, directory=ds.directory, pki=pki)
                + (["--tls12"] if tls == "tls12" else []),
                timeout,
            )
        if leg.scu == "raw":
            cmd = peer_cmd("peer_raw.py", "send", port=port, directory=ds.directory, pki=None)
            if leg.scp == "raw-tls":
                cmd += ["--pki", str(pki)] + (["--tls12"] if tls == "tls12" else [])
            return run_json(cmd, timeout)
        # DCMTK storescu: wall clock of the process (includes its start, ~tens of ms)
        called = "STORESCP" if leg.scp == "dcmtk" else "DICOMTLS"
        files = sorted(str(p) for p in ds.directory.glob("*.dcm"))
        cmd = [*storescu_cmd(pki, called), "127.0.0.1", str(port), *files]
        t0 = time.perf_counter()
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)
        elapsed = time.perf_counter() - t0
        if done.returncode != 0:
            raise RuntimeError(f"storescu failed ({done.returncode}): {done.stderr[-2000:]}")
        return {"elapsed": elapsed, "n": len(files), "failed": 0, "cipher": None}

    def _disk(self, ds: DataSet, recv: Path, *, fsync: bool) -> JsonObject:
        """The same objects written like our durable store does: stream to a temporary file,
        fsync, rename, fsync the directory (fsync=False: the same without any fsync)."""
        buf = bytearray(4 << 20)
        view = memoryview(buf)
        dir_fd = os.open(recv, os.O_RDONLY)
        t0 = time.perf_counter()
        try:
            for obj in ds.objects:
                tmp, final = recv / f"{obj['file']}.tmp", recv / obj["file"]
                fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
                with (ds.directory / obj["file"]).open("rb", buffering=0) as src:
                    while n := src.readinto(buf):
                        os.write(fd, view[:n])
                if fsync:
                    os.fsync(fd)
                os.close(fd)
                os.rename(tmp, final)
                if fsync:
                    os.fsync(dir_fd)
            elapsed = time.perf_counter() - t0
        finally:
            os.close(dir_fd)
        return {"elapsed": elapsed, "n": ds.count, "failed": 0, "cipher": None}


# ----------------------------------------------------------------------------- load / memory
# Issue 8 items 3 (assoc-rate), 4 (concurrency) and 6 (memory-1g). Peak memory is VmHWM from
# /proc/<pid>/status of the process itself (not getrusage ru_maxrss: Linux carries the parent's
# high-water mark across fork/exec into the child's maxrss).
LOAD_SCENARIOS = ("assoc-rate", "concurrency", "memory-1g")


def vmhwm(pid: int) -> int | None:
    """Peak resident set of a live process, bytes (VmHWM), or None if it is gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


class HWMPoller:
    """Polls a process's VmHWM every 20 ms until it exits; keeps the last value read (VmHWM
    only grows, so this misses at most the last 20 ms of growth)."""

    def __init__(self, pid: int) -> None:
        import threading

        self.pid = pid
        self.peak: int | None = None
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while (v := vmhwm(self.pid)) is not None:
            self.peak = v
            time.sleep(0.02)

    def join(self) -> int | None:
        self._thread.join(timeout=5)
        return self.peak


def cpu_seconds(pid: int) -> float | None:
    """utime + stime of a live process and of its reaped children (``storescp --fork``'s
    per-association processes), from /proc/<pid>/stat, seconds."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        ticks = sum(int(f) for f in fields[11:15])  # utime, stime, cutime, cstime
        return ticks / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return None


def med(xs: list[float]) -> Stats:
    return {"median": statistics.median(xs), "min": min(xs), "max": max(xs)} if xs else {}


class Load:
    def __init__(self, bench: Bench, args: argparse.Namespace) -> None:
        self.b, self.args = bench, args

    def _start(
        self,
        kind: str,
        pki: str,
        recv: Path,
        tls: str = "tls13",
        extra: list[str] | None = None,
        nodelay: bool = False,
    ) -> tuple[subprocess.Popen[str], int, IO[str]]:
        leg = Leg("load_nodelay" if nodelay else "load", "load", kind, "ours", pki)
        port = free_port()
        logf = (self.b.logs / f"load-{kind}-{pki}.log").open("w")
        if kind.startswith("ours") and extra:
            cmd = serve_cmd(kind, recv, port, self.b.pki[pki], *extra)
            proc = subprocess.Popen(cmd, stdout=logf, stderr=subprocess.STDOUT, cwd=REPO, text=True)
            wait_port(port, proc)
        else:
            proc = self.b._start_scp(
                leg, tls, self.b.pki[pki], port, recv, None, self.b.env(leg, tls), logf
            )
        return proc, port, logf

    def _clients(
        self, base: list[str], procs: int, per_proc: list[list[str]], timeout: float
    ) -> tuple[list[JsonObject], list[int | None]]:
        """Start `procs` client processes, wait for each one's "ready", release them together
        with one line on stdin, collect their JSON lines and their peak RSS."""
        ps = [
            subprocess.Popen(
                base + per_proc[i],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
                cwd=REPO,
            )
            for i in range(procs)
        ]
        try:
            for proc in ps:
                wait_line(proc, "ready", timeout=120)
            pollers = [HWMPoller(proc.pid) for proc in ps]
            for proc in ps:
                assert proc.stdin is not None
                proc.stdin.write("go\n")
                proc.stdin.flush()
            outs = []
            for proc in ps:
                out, err = proc.communicate(timeout=timeout)
                lines = [x for x in out.splitlines() if x.startswith("{")]
                if proc.returncode != 0 or not lines:
                    raise RuntimeError(f"client failed ({proc.returncode}): {err[-1500:]}")
                outs.append(json.loads(lines[-1]))
            return outs, [p.join() for p in pollers]
        finally:
            for proc in ps:
                if proc.poll() is None:
                    proc.kill()
                    proc.wait()

    @staticmethod
    def _combine(outs: list[JsonObject]) -> JsonObject:
        errors: dict[str, int] = {}
        for o in outs:
            for k, v in o["errors"].items():
                errors[k] = errors.get(k, 0) + v
        start, end = min(o["start"] for o in outs), max(o["end"] for o in outs)
        return {
            "elapsed": end - start,
            "ok": sum(o["ok"] for o in outs),
            "failed": sum(o["failed"] for o in outs),
            "errors": errors,
        }

    # -- item 3
    def assoc_rate(self) -> JsonObject:
        a = self.args
        procs = a.load_procs
        per = [
            a.assoc_clients // procs + (1 if i < a.assoc_clients % procs else 0)
            for i in range(procs)
        ]
        rows: dict[str, JsonObject] = {}
        for scp, label, called, nodelay in (
            ("ours-relaxed", "ours: dicomtls serve", "DICOMTLS", False),
            ("pynetdicom", "pynetdicom SCP (stdlib ssl)", "PYSCP", False),
            ("dcmtk", "DCMTK storescp +tls", "STORESCP", False),
            ("dcmtk", "DCMTK storescp +tls, TCP_NODELAY=1", "STORESCP", True),
            ("dcmtk-fork", "DCMTK storescp +tls --fork, TCP_NODELAY=1", "STORESCP", True),
        ):
            for pki in ("ec", "rsa"):
                name = scp.removesuffix("-relaxed").replace("-", "_")
                key = f"{name}{'_nodelay' if nodelay else ''}_{pki}"
                rates: list[float] = []
                samples: list[JsonObject] = []
                for rep in range(a.reps):
                    recv = self.b.recv_root / f"load-{key}"
                    shutil.rmtree(recv, ignore_errors=True)
                    recv.mkdir(parents=True)
                    extra = (
                        ["--max-associations", "64", "--max-per-peer", "64"]
                        if scp.startswith("ours")
                        else None
                    )
                    proc, port, logf = self._start(scp, pki, recv, extra=extra, nodelay=nodelay)
                    try:
                        base = [
                            PY,
                            str(HERE / "peer_load.py"),
                            "echo",
                            "--port",
                            str(port),
                            "--pki",
                            str(self.b.pki[pki]),
                            "--called-ae",
                            called,
                            "--each",
                            str(a.assoc_each),
                        ]
                        outs, _ = self._clients(
                            base, procs, [["--clients", str(n)] for n in per], timeout=600
                        )
                        scp_hwm, scp_cpu = vmhwm(proc.pid), cpu_seconds(proc.pid)
                    except Exception as exc:
                        outs, scp_hwm, scp_cpu = [], None, None
                        samples.append({"error": str(exc)[:500]})
                        log(f"assoc-rate {key} rep {rep + 1}: FAILED {exc}")
                    finally:
                        stop(proc)
                        logf.close()
                    if outs:
                        r = self._combine(outs)
                        r["rate"] = r["ok"] / r["elapsed"]
                        r["scp_hwm_mb"] = None if scp_hwm is None else scp_hwm / MB
                        # includes its start-up (imports, reading the PKI): an upper bound
                        r["scp_cpu_ms_per_assoc"] = (
                            None if scp_cpu is None or not r["ok"] else 1000 * scp_cpu / r["ok"]
                        )
                        samples.append(r)
                        rates.append(r["rate"])
                        log(
                            f"assoc-rate {key:16s} rep {rep + 1}/{a.reps}: {r['rate']:7.1f} "
                            f"assoc/s, ok {r['ok']}, failed {r['failed']} {r['errors'] or ''}"
                        )
                rows[key] = {
                    "label": f"{label}, {'ECDSA P-256' if pki == 'ec' else 'RSA-2048'}",
                    "rate": med(rates),
                    "samples": samples,
                    "failed": sum(s.get("failed", 0) for s in samples),
                    "expected_per_rep": a.assoc_clients * a.assoc_each,
                }
        return {
            "description": f"{a.assoc_clients} concurrent clients (ours, asyncio, "
            f"{procs} processes) x {a.assoc_each} associations each: "
            "connect + mutual TLS 1.3 + associate + C-ECHO + release",
            "rows": rows,
        }

    # -- item 4
    def concurrency(self) -> JsonObject:
        a = self.args
        n, k = a.conc_assocs, a.conc_per
        ds = make_dataset(self.b.work, "conc", n * k, a.conc_kb << 10)
        procs = a.load_procs
        samples: list[JsonObject] = []
        for rep in range(a.reps):
            recv = self.b.recv_root / "load-concurrency"
            shutil.rmtree(recv, ignore_errors=True)
            recv.mkdir(parents=True)
            os.sync()
            cap = str(max(600, n + 100))
            proc, port, logf = self._start(
                "ours-durable", "ec", recv, extra=["--max-associations", cap, "--max-per-peer", cap]
            )
            r: JsonObject = {}
            try:
                base = [
                    PY,
                    str(HERE / "peer_load.py"),
                    "store",
                    "--port",
                    str(port),
                    "--pki",
                    str(self.b.pki["ec"]),
                    "--dir",
                    str(ds.directory),
                    "--per",
                    str(k),
                    "--clients",
                    str(n),
                ]
                outs, client_hwm = self._clients(
                    base, procs, [["--part", f"{i}/{procs}"] for i in range(procs)], timeout=1800
                )
                r = self._combine(outs)
                r["client_hwm_mb"] = [None if h is None else h / MB for h in client_hwm]
            except Exception as exc:
                r = {"error": str(exc)[:500], "ok": 0, "failed": n * k}
                log(f"concurrency rep {rep + 1}: FAILED {exc}")
            finally:
                hwm = vmhwm(proc.pid)  # before stopping it
                stop(proc)
                logf.close()
            r["scp_hwm_mb"] = None if hwm is None else hwm / MB
            try:
                verify(recv / "objects", ds)
                r["verified"] = True
            except Exception as exc:
                r["verified"] = str(exc)[:300]
            shutil.rmtree(recv, ignore_errors=True)
            samples.append(r)
            log(
                f"concurrency rep {rep + 1}/{a.reps}: ok {r.get('ok')}/{n * k}, failed "
                f"{r.get('failed')}, {r.get('elapsed', 0):.1f} s, SCP VmHWM "
                f"{r['scp_hwm_mb']} MB, verified {r['verified']} {r.get('errors') or ''}"
            )
        good = [s for s in samples if "elapsed" in s]
        return {
            "description": f"{n} concurrent mutual-TLS associations x {k} objects of "
            f"{a.conc_kb} KiB into dicomtls serve (durable), clients: ours, "
            f"asyncio, {procs} processes",
            "expected": n * k,
            "samples": samples,
            "elapsed": med([s["elapsed"] for s in good]),
            "objps": med([(s["ok"]) / s["elapsed"] for s in good]),
            "scp_hwm_mb": med([s["scp_hwm_mb"] for s in samples if s["scp_hwm_mb"]]),
            "failed": sum(s.get("failed", 0) for s in samples),
            "all_verified": all(s.get("verified") is True for s in samples),
        }

    # -- item 6
    def memory(self) -> JsonObject:
        a = self.args
        ds = make_dataset(self.b.work, "mem", 1, a.mem_mb << 20)
        path = ds.directory / ds.objects[0]["file"]
        rows: dict[str, JsonObject] = {}
        pairs = [
            Leg("ours", "ours -> ours (durable)", "ours-durable", "ours", "ec"),
            Leg("dcmtk", "DCMTK storescu -> storescp", "dcmtk", "dcmtk", "rsa"),
            Leg("pynetdicom", "pynetdicom -> pynetdicom", "pynetdicom", "pynetdicom", "ec"),
        ]
        only = {k for k in a.only.split(",") if k}
        for leg in pairs:
            if only and leg.key not in only:
                continue
            samples: list[JsonObject] = []
            for rep in range(a.reps):
                recv = self.b.recv_root / f"load-mem-{leg.key}"
                shutil.rmtree(recv, ignore_errors=True)
                recv.mkdir(parents=True)
                os.sync()
                pki = self.b.pki[leg.pki]
                env = self.b.env(leg, "tls13")
                port = free_port()
                logf = (self.b.logs / f"mem-{leg.key}.log").open("w")
                scp = self.b._start_scp(leg, "tls13", pki, port, recv, ds, env, logf)
                if leg.scu == "ours":
                    cmd = peer_cmd("peer_ours_scu.py", port=port, directory=ds.directory, pki=pki)
                elif leg.scu == "pynetdicom":
                    cmd = peer_cmd(
                        "peer_pynetdicom.py", "scu", port=port, directory=ds.directory, pki=pki
                    )
                else:
                    cmd = [*storescu_cmd(pki, "STORESCP"), "127.0.0.1", str(port), str(path)]
                r: JsonObject = {}
                try:
                    t0 = time.perf_counter()
                    scu = subprocess.Popen(
                        cmd,
                        stdout=subprocess.PIPE,
                        stderr=subprocess.PIPE,
                        text=True,
                        cwd=REPO,
                        env=env,
                    )
                    poller = HWMPoller(scu.pid)
                    out, err = scu.communicate(timeout=self.b._timeout(ds))
                    r["elapsed"] = time.perf_counter() - t0
                    r["scu_hwm_mb"] = (poller.join() or 0) / MB
                    if scu.returncode != 0:
                        raise RuntimeError(f"SCU failed ({scu.returncode}): {err[-1500:]}")
                    lines = [x for x in out.splitlines() if x.startswith("{")]
                    if lines:
                        r["elapsed"] = json.loads(lines[-1])["elapsed"]
                    time.sleep(0.5)  # let the SCP finish its side (commit) before reading
                    r["scp_hwm_mb"] = (vmhwm(scp.pid) or 0) / MB
                except Exception as exc:
                    r["error"] = str(exc)[:500]
                    log(f"memory {leg.key} rep {rep + 1}: FAILED {exc}")
                finally:
                    stop(scp)
                    logf.close()
                if "error" not in r:
                    try:
                        verify(recv / "objects" if leg.scp.startswith("ours") else recv, ds)
                    except Exception as exc:
                        r["error"] = f"verify: {exc}"[:500]
                shutil.rmtree(recv, ignore_errors=True)
                samples.append(r)
                log(
                    f"memory {leg.key:11s} rep {rep + 1}/{a.reps}: SCU {r.get('scu_hwm_mb', 0):.1f}"
                    f" MB, SCP {r.get('scp_hwm_mb', 0):.1f} MB, "
                    f"{ds.total_bytes / MB / r.get('elapsed', 1):.0f} MB/s {r.get('error', '')}"
                )
            good = [s for s in samples if "error" not in s]
            rows[leg.key] = {
                "label": leg.label,
                "scu_hwm_mb": med([s["scu_hwm_mb"] for s in good]),
                "scp_hwm_mb": med([s["scp_hwm_mb"] for s in good]),
                "mbps": med([ds.total_bytes / MB / s["elapsed"] for s in good]),
                "samples": samples,
            }
        return {
            "description": f"one {a.mem_mb} MiB object ({ds.total_bytes / MB:.0f} MB "
            "Part 10 file), mutual TLS 1.3, SCU and SCP each their own "
            "process; peak RSS = VmHWM",
            "rows": rows,
        }


def load_report(load: JsonObject) -> list[str]:
    """Markdown for the assoc-rate / concurrency / memory-1g scenarios, targets marked."""

    def yn(ok: bool | None) -> str:
        return "" if ok is None else ("yes" if ok else "**no**")

    lines: list[str] = []
    if sc := load.get("assoc-rate"):
        rows = sc["rows"]
        lines += [
            f"## assoc-rate: {sc['description']}",
            "",
            f"Command: `{sc.get('command', '?')}` ({sc.get('date', '')})",
            "",
            "| SCP | assoc/s median (min-max) | failed / attempted | SCP CPU ms per "
            "assoc (incl. start-up) | SCP peak RSS MB | errors |",
            "|---|---|---|---|---|---|",
        ]
        for row in rows.values():
            r = row["rate"]
            att = row["expected_per_rep"] * len(row["samples"])
            hwm = [s["scp_hwm_mb"] for s in row["samples"] if s.get("scp_hwm_mb")]
            errs = "; ".join(
                f"{k} (x{v})" for s in row["samples"] for k, v in s.get("errors", {}).items()
            )
            errs += "; ".join(s["error"] for s in row["samples"] if "error" in s)
            shown = f"**{r['median']:.1f}** ({r['min']:.1f}-{r['max']:.1f})" if r else "FAILED"
            cpu = [
                s["scp_cpu_ms_per_assoc"] for s in row["samples"] if s.get("scp_cpu_ms_per_assoc")
            ]
            lines.append(
                f"| {row['label']} | {shown} | {row['failed']} / {att} | "
                f"{fmt(statistics.median(cpu) if cpu else None, 1)} | "
                f"{fmt(max(hwm) if hwm else None, 0)} | {errs[:300]} |"
            )

        def rate(key: str) -> float | None:
            stats: Stats = rows[key]["rate"] if key in rows else {}
            return stats.get("median")

        lines += ["", "| target | value | met |", "|---|---|---|"]
        for pki, name in (("ec", "ECDSA P-256"), ("rsa", "RSA-2048")):
            o, p = rate(f"ours_{pki}"), rate(f"pynetdicom_{pki}")
            v = None if o is None or not p else o / p
            lines.append(
                f"| ours / pynetdicom SCP ≥ 3, {name} | {fmt(v)} | "
                f"{yn(None if v is None else v >= 3)} |"
            )
        for pki, name in (("ec", "ECDSA P-256"), ("rsa", "RSA-2048")):
            best = max(
                (
                    v
                    for k in ("dcmtk", "dcmtk_nodelay", "dcmtk_fork_nodelay")
                    if (v := rate(f"{k}_{pki}"))
                ),
                default=None,
            )
            o = rate(f"ours_{pki}")
            v = None if o is None or not best else o / best
            lines.append(
                f"| ours ≥ 2x DCMTK's storescp at its fastest (incl. --fork), {name} | {fmt(v)} | "
                f"{yn(None if v is None else v >= 2)} |"
            )
        fails = rows.get("ours_ec", {}).get("failed", 0) + rows.get("ours_rsa", {}).get("failed", 0)
        lines += [f"| our SCP: no failed association | {fails} failed | {yn(fails == 0)} |", ""]
    if sc := load.get("concurrency"):
        lines += [
            f"## concurrency: {sc['description']}",
            "",
            f"Command: `{sc.get('command', '?')}` ({sc.get('date', '')})",
            "",
            "| rep | stored ok / expected | failed | total s | objects/s | SCP peak RSS "
            "(VmHWM) MB | client peak RSS MB | verified | errors |",
            "|---|---|---|---|---|---|---|---|---|",
        ]
        for i, s in enumerate(sc["samples"], 1):
            errs = "; ".join(f"{k} (x{v})" for k, v in s.get("errors", {}).items())
            errs += s.get("error", "")
            el = s.get("elapsed")
            lines.append(
                f"| {i} | {s.get('ok')} / {sc['expected']} | {s.get('failed')} | "
                f"{fmt(el, 1)} | {fmt(s['ok'] / el if el else None, 1)} | "
                f"{fmt(s.get('scp_hwm_mb'), 1)} | "
                f"{', '.join(fmt(h, 0) for h in s.get('client_hwm_mb', []))} | "
                f"{s.get('verified')} | {errs[:300]} |"
            )
        hw = sc["scp_hwm_mb"]
        lines += [
            "",
            "| target | value | met |",
            "|---|---|---|",
            f"| all associations succeed | {sc['failed']} objects failed over "
            f"{len(sc['samples'])} reps; verified: {sc['all_verified']} | "
            f"{yn(sc['failed'] == 0 and sc['all_verified'])} |",
            f"| SCP peak RSS < 300 MB | max {fmt(hw.get('max'), 1)} MB | "
            f"{yn(None if not hw else hw['max'] < 300)} |",
            "",
        ]
    if sc := load.get("memory-1g"):
        lines += [
            f"## memory-1g: {sc['description']}",
            "",
            f"Command: `{sc.get('command', '?')}` ({sc.get('date', '')})",
            "",
            "| pair | SCU peak RSS MB median (min-max) | SCP peak RSS MB median (min-max) "
            "| MB/s median | < 100 MB each side | errors |",
            "|---|---|---|---|---|---|",
        ]
        for key, row in sc["rows"].items():
            u, p, m = row["scu_hwm_mb"], row["scp_hwm_mb"], row["mbps"]
            errs = "; ".join(s["error"] for s in row["samples"] if "error" in s)

            def rng(x: Stats) -> str:
                return f"**{x['median']:.1f}** ({x['min']:.1f}-{x['max']:.1f})" if x else "-"

            met = None if not u or not p else (u["max"] < 100 and p["max"] < 100)
            lines.append(
                f"| {row['label']} | {rng(u)} | {rng(p)} | {fmt(m.get('median'), 0)} "
                f"| {yn(met) + ' (target is for ours)' if key != 'ours' and met is not None else yn(met)} "
                f"| {errs[:300]} |"
            )
        lines.append("")
    return lines


# ----------------------------------------------------------------------------- report
def summarise(samples: list[JsonObject], ds: DataSet) -> JsonObject:
    mbps = [ds.total_bytes / MB / s["elapsed"] for s in samples]
    objs = [ds.count / s["elapsed"] for s in samples]
    return {
        "mbps": {"median": statistics.median(mbps), "min": min(mbps), "max": max(mbps)},
        "objps": {"median": statistics.median(objs), "min": min(objs), "max": max(objs)},
        "seconds": [s["elapsed"] for s in samples],
        "cipher": next((s["cipher"] for s in samples if s.get("cipher")), None),
        "src": sorted({s.get("src", "?") for s in samples}),
    }


def ratios(rows: dict[str, JsonObject]) -> dict[str, float | None]:
    def m(key: str) -> float | None:
        return float(rows[key]["mbps"]["median"]) if key in rows else None

    def r(a: str, b: str) -> float | None:
        x, y = m(a), m(b)
        return None if x is None or y is None or y == 0 else x / y

    return {
        "ours relaxed / tuned DCMTK": r("ours_relaxed", "dcmtk_nodelay"),
        "ours durable / tuned DCMTK": r("ours_durable", "dcmtk_nodelay"),
        "ours relaxed / DCMTK as shipped": r("ours_relaxed", "dcmtk"),
        "ours durable / DCMTK as shipped": r("ours_durable", "dcmtk"),
        "ours relaxed / pynetdicom": r("ours_relaxed", "pynetdicom"),
        "ours durable / pynetdicom": r("ours_durable", "pynetdicom"),
        "ours durable, window 1 / pynetdicom": r("ours_sync", "pynetdicom"),
        "ours relaxed / raw TLS": r("ours_relaxed", "raw_tls"),
        "ours durable / disk fsync": r("ours_durable", "disk_fsync"),
    }


TARGETS = {  # issue 15's targets, per scenario kind: (ratio name, minimum)
    "large": [
        ("ours relaxed / tuned DCMTK", 1.0),
        ("ours durable / disk fsync", 0.9),
        ("ours relaxed / pynetdicom", 5.0),
    ],
    "small": [
        ("ours relaxed / tuned DCMTK", 1.0),
        ("ours durable / tuned DCMTK", 1.0),
        ("ours durable / pynetdicom", 3.0),
    ],
}


def fmt(x: float | None, digits: int = 2) -> str:
    return "-" if x is None else f"{x:.{digits}f}"


def write_report(results: JsonObject, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(results, indent=2))
    meta = results["meta"]
    lines = [
        f"# Benchmark results ({meta['date']})",
        "",
        f"Command: `{meta['command']}`  ",
        f"Machine: {meta['machine']}  ",
        f"Repetitions: {meta['reps']} (median, with min-max). MB = 10^6 bytes; bytes are "
        "whole Part 10 files. Elapsed for our and pynetdicom SCUs: connect+TLS+associate "
        "to last C-STORE response, measured inside the SCU process; DCMTK storescu: "
        "process wall clock (includes its start-up). Raw and disk legs: same bytes.",
        "",
    ]
    prints = sorted(
        {
            f
            for sc in results["scenarios"].values()
            for row in sc["rows"].values()
            for f in row.get("src", [])
        }
    )
    lines += [
        f"Source: git {meta.get('git', '?')}; src/ fingerprint(s) seen by the peers: "
        f"{', '.join(prints) or 'not recorded'}"
        + (
            " -- **src/ changed during the run: rows mix code versions**" if len(prints) > 1 else ""
        ),
        "",
    ]
    for name, sc in results.get("scenarios", {}).items():
        lines += [
            f"## {name}: {sc['description']}",
            "",
            "| leg | MB/s median (min-max) | objects/s median | negotiated |",
            "|---|---|---|---|",
        ]
        for row in sc["rows"].values():
            mb, ob = row["mbps"], row["objps"]
            lines.append(
                f"| {row['label']} | **{mb['median']:.1f}** ({mb['min']:.1f}-"
                f"{mb['max']:.1f}) | {ob['median']:.1f} | {row['cipher'] or ''} |"
            )
        for key, err in sc.get("errors", {}).items():
            lines.append(f"| {key} | FAILED: {err[:120]} | | |")
        lines += ["", "| ratio (medians) | value | target | met |", "|---|---|---|---|"]
        kind = "large" if name.startswith("large") else "small"
        targets = dict(TARGETS[kind])
        for rname, value in sc["ratios"].items():
            tgt = targets.get(rname)
            met = "" if tgt is None or value is None else ("yes" if value >= tgt else "**no**")
            lines.append(
                f"| {rname} | {fmt(value)} | {'' if tgt is None else f'≥ {tgt}'} | {met} |"
            )
        lines.append("")
    lines += load_report(results.get("load", {}))
    commands = results.get("commands", {})
    lines += commands_report(
        {k: v for k, v in commands.items() if k.startswith("process")}, commands.get("startup")
    )
    # only scenarios with at least one row get a panel: a run of the command or load
    # scenarios alone (or one where every leg failed) has nothing for results.png to show
    drawn = {name: sc for name, sc in results["scenarios"].items() if sc["rows"]}
    if drawn:
        lines += ["![chart](results.png)", ""]
    if results.get("load"):
        lines += ["![load scenarios](results-load.png)", ""]
    (out / "results.md").write_text("\n".join(lines))
    try:
        if drawn:
            chart(drawn, out / "results.png")
        else:
            log("chart skipped: no in-process scenario (large-*, small-*) has results to draw")
        if results.get("load"):
            load_chart(results["load"], out / "results-load.png")
    except Exception as exc:  # the table is the result; the chart is a view of it
        log(f"chart failed: {exc}")


def chart(scenarios: dict[str, JsonObject], path: Path) -> None:
    """One panel per in-process scenario (at least one, each with at least one row)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(scenarios), 1, figsize=(10, 3.2 * len(scenarios)))
    axes = [axes] if len(scenarios) == 1 else axes
    for ax, (name, sc) in zip(axes, scenarios.items(), strict=True):
        rows = list(sc["rows"].values())
        labels = [r["label"] for r in rows]
        med = [r["mbps"]["median"] for r in rows]
        err = [
            [m - r["mbps"]["min"] for m, r in zip(med, rows, strict=True)],
            [r["mbps"]["max"] - m for m, r in zip(med, rows, strict=True)],
        ]
        colors = [
            "tab:gray"
            if r["label"].startswith(("raw", "disk"))
            else "tab:blue"
            if r["label"].startswith("ours ->") and "DCMTK" not in r["label"]
            else "tab:purple"
            if "ours" in r["label"]
            else "tab:orange"
            for r in rows
        ]
        ax.barh(labels, med, xerr=err, color=colors)
        ax.invert_yaxis()
        ax.set_xscale("log")
        ax.set_title(f"{name}: {sc['description']}", fontsize=9)
        ax.set_xlabel(
            "MB/s (log scale; median, bars min-max). blue: ours<->ours, "
            "purple: ours<->DCMTK, orange: DCMTK / pynetdicom, gray: ceilings",
            fontsize=8,
        )
        ax.tick_params(axis="y", labelsize=8)
        for y, m in enumerate(med):
            ax.text(m, y, f" {m:.0f}", va="center", fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def load_chart(load: JsonObject, path: Path) -> None:
    """Items 3, 4, 6: association rate per SCP, and peak memory (1 GiB object, 500 associations)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [name for name in ("assoc-rate", "memory-1g", "concurrency") if name in load]
    fig, axes = plt.subplots(len(panels), 1, figsize=(10, 2.9 * len(panels)))
    axes = [axes] if len(panels) == 1 else axes
    for ax, name in zip(axes, panels, strict=True):
        sc = load[name]
        if name == "assoc-rate":
            rows = list(sc["rows"].values())
            labels, values = [r["label"] for r in rows], [r["rate"] for r in rows]
            unit = "mutual-TLS associations/s the SCP sustains (median, bars min-max)"
        elif name == "memory-1g":
            rows = [r for r in sc["rows"].values() for _ in (0, 1)]
            labels = [
                f"{r['label']}: {side}" for r in sc["rows"].values() for side in ("SCU", "SCP")
            ]
            values = [r[k] for r in sc["rows"].values() for k in ("scu_hwm_mb", "scp_hwm_mb")]
            unit = "peak RSS, MB, moving one 1 GiB object (log scale; target < 100 MB for ours)"
        else:
            labels = ["SCP peak RSS, MB", "objects/s (all 10,000 verified)"]
            values = [sc["scp_hwm_mb"], sc["objps"]]
            unit = "500 concurrent associations x 20 objects, durable"
        med = [v["median"] for v in values]
        err = [
            [m - v["min"] for m, v in zip(med, values, strict=True)],
            [v["max"] - m for m, v in zip(med, values, strict=True)],
        ]
        colors = [
            "tab:blue" if "ours" in lab or name == "concurrency" else "tab:orange" for lab in labels
        ]
        ax.barh(labels, med, xerr=err, color=colors)
        ax.invert_yaxis()
        if name == "memory-1g":
            ax.set_xscale("log")
            ax.axvline(100, color="tab:red", linestyle="--", linewidth=1)
        ax.set_title(textwrap.fill(f"{name}: {sc['description']}", 120), fontsize=8)
        ax.set_xlabel(unit, fontsize=8)
        ax.tick_params(axis="y", labelsize=8)
        for y, m in enumerate(med):
            ax.text(m, y, f" {m:.0f}", va="center", fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


# ----------------------------------------------------------------------------- as users run it
COMMAND_SCENARIOS = ("process-512k", "process-large", "startup")


def run_commands(
    bench: Bench, args: argparse.Namespace, chosen: list[str]
) -> dict[str, JsonObject]:
    """The whole-process and start-up scenarios (bench/commands.py)."""
    from commands import Commands, startup

    out: dict[str, JsonObject] = {}
    for name in chosen:
        t0 = time.time()
        if name == "startup":
            out[name] = startup(args.startup_reps)
        else:
            data, count, size = (
                ("small512k", args.process512_count, 512 << 10)
                if name == "process-512k"
                else ("large", args.large_count, args.large_mb << 20)
            )
            ds = make_dataset(bench.work, data, count, size)  # the same files as the other legs
            out[name] = Commands(bench, args.reps).scenario(
                ds, f"{count} x {size >> 10} KiB files, a folder sent by a command"
            )
        out[name].update(
            command="bash bench/run.sh " + " ".join(sys.argv[1:]),
            date=time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
            wall_seconds=round(time.time() - t0, 1),
            src=src_fingerprint(),
        )
    return out


def commands_report(process: dict[str, JsonObject], start: JsonObject | None) -> list[str]:
    from commands import report

    return report(process, start)


# ----------------------------------------------------------------------------- main
def in_process_scenarios(
    work: Path, args: argparse.Namespace, chosen: list[str]
) -> dict[str, tuple[DataSet, str, str]]:
    """Each chosen in-process scenario: its data set (made once; both large scenarios send
    the same one), its TLS version and its description."""
    large = f"{args.large_count} x {args.large_mb} MiB, mutual TLS"
    specs = {  # scenario: (data set, count, size, TLS version, description)
        "large-tls13": ("large", args.large_count, args.large_mb << 20, "tls13", f"{large} 1.3"),
        "large-tls12": ("large", args.large_count, args.large_mb << 20, "tls12", f"{large} 1.2"),
        "small-64k": (
            "small64k",
            args.small64_count,
            64 << 10,
            "tls13",
            f"{args.small64_count} x 64 KiB on one association, TLS 1.3",
        ),
        "small-512k": (
            "small512k",
            args.small512_count,
            512 << 10,
            "tls13",
            f"{args.small512_count} x 512 KiB on one association, TLS 1.3",
        ),
    }
    datasets: dict[str, DataSet] = {}
    scenarios: dict[str, tuple[DataSet, str, str]] = {}
    for name in chosen:
        data, count, size, tls, description = specs[name]
        if data not in datasets:
            datasets[data] = make_dataset(work, data, count, size)
        scenarios[name] = (datasets[data], tls, description)
    return scenarios


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument(
        "--quick",
        action="store_true",
        help="2 x 64 MB, 200 x 64 KB, 50 x 512 KB (unless given explicitly)",
    )
    p.add_argument("--reps", type=int, default=5)
    p.add_argument("--large-count", type=int)
    p.add_argument("--large-mb", type=int)
    p.add_argument("--small64-count", type=int)
    p.add_argument("--small512-count", type=int)
    p.add_argument("--only", default="", help="comma list of leg keys to run (default: all)")
    p.add_argument(
        "--scenarios",
        default="large-tls13,large-tls12,small-64k,small-512k,assoc-rate,concurrency,memory-1g,"
        "process-512k,process-large,startup",
        help="comma list (default: all)",
    )
    p.add_argument(
        "--process512-count", type=int, help="objects of 512 KiB, whole-process leg (200; quick 50)"
    )
    p.add_argument("--startup-reps", type=int, default=20, help="runs of each start-up command")
    p.add_argument("--assoc-clients", type=int, default=16)
    p.add_argument("--assoc-each", type=int, help="associations per client (50; quick 10)")
    p.add_argument("--conc-assocs", type=int, help="concurrent associations (500; quick 100)")
    p.add_argument("--conc-per", type=int, help="objects per association (20; quick 5)")
    p.add_argument("--conc-kb", type=int, default=32, help="object size, KiB")
    p.add_argument("--mem-mb", type=int, help="the big object, MiB (1024; quick 256)")
    p.add_argument(
        "--load-procs", type=int, default=2, help="client processes for assoc-rate and concurrency"
    )
    p.add_argument(
        "--merge",
        action="store_true",
        help="keep the scenarios already in --out/results.json that this run does not redo",
    )
    p.add_argument("--workdir", default="/tmp/dicomtls-bench")
    p.add_argument("--out", default=str(HERE / "results"))
    p.add_argument(
        "--replot",
        action="store_true",
        help="only rewrite results.md and results.png from --out/results.json",
    )
    args = p.parse_args()
    if args.replot:
        write_report(json.loads((Path(args.out) / "results.json").read_text()), Path(args.out))
        return
    quick = (2, 64, 200, 50, 10, 100, 5, 256, 50)
    full = (4, 256, 2000, 500, 50, 500, 20, 1024, 200)
    defaults = quick if args.quick else full
    for attr, d in zip(
        (
            "large_count",
            "large_mb",
            "small64_count",
            "small512_count",
            "assoc_each",
            "conc_assocs",
            "conc_per",
            "mem_mb",
            "process512_count",
        ),
        defaults,
        strict=True,
    ):
        if getattr(args, attr) is None:
            setattr(args, attr, d)

    bench = Bench(args)
    work = bench.work
    chosen_all = [s for s in args.scenarios.split(",") if s]
    load_chosen = [s for s in chosen_all if s in LOAD_SCENARIOS]
    command_chosen = [s for s in chosen_all if s in COMMAND_SCENARIOS]
    args.scenarios = ",".join(
        s for s in chosen_all if s not in LOAD_SCENARIOS and s not in COMMAND_SCENARIOS
    )
    command_results = run_commands(bench, args, command_chosen)
    load_results: dict[str, JsonObject] = {}
    for sname in load_chosen:
        t0 = time.time()
        load_results[sname] = {
            "assoc-rate": Load(bench, args).assoc_rate,
            "concurrency": Load(bench, args).concurrency,
            "memory-1g": Load(bench, args).memory,
        }[sname]()
        load_results[sname].update(
            command="bash bench/run.sh " + " ".join(sys.argv[1:]),
            reps=args.reps,
            date=time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
            wall_seconds=round(time.time() - t0, 1),
            src=src_fingerprint(),
        )
    chosen = [s for s in args.scenarios.split(",") if s]
    all_scenarios = in_process_scenarios(work, args, chosen)
    only = {k for k in args.only.split(",") if k}
    legs = [leg for leg in LEGS if not only or leg.key in only]
    samples: dict[str, dict[str, list[JsonObject]]] = {
        s: {leg.key: [] for leg in legs} for s in chosen
    }
    errors: dict[str, dict[str, str]] = {s: {} for s in chosen}
    started = time.time()
    for rep in range(args.reps):
        for sname in chosen:
            ds, tls, _ = all_scenarios[sname]
            for leg in legs:
                if leg.key in errors[sname]:
                    continue
                if leg.key == "ours_sync" and sname.startswith("large"):
                    continue  # the window is about many objects; two large ones gain nothing
                fingerprint = src_fingerprint()
                try:
                    res = bench.run(leg, ds, tls)
                except Exception as exc:  # record, keep the other legs going
                    errors[sname][leg.key] = str(exc)
                    log(f"rep {rep + 1} {sname} {leg.key}: FAILED {exc}")
                    continue
                if leg.scu == "dcmtk" and rep == 0:
                    try:
                        res["cipher"] = bench.probe_dcmtk_cipher(leg, ds, tls)
                    except Exception as exc:
                        log(f"cipher probe {leg.key}: {exc}")
                res["src"] = (
                    fingerprint if fingerprint == src_fingerprint() else "changed-during-leg"
                )
                samples[sname][leg.key].append(res)
                log(
                    f"rep {rep + 1}/{args.reps} {sname:11s} {leg.key:14s} "
                    f"{ds.total_bytes / MB / res['elapsed']:8.1f} MB/s "
                    f"{ds.count / res['elapsed']:8.1f} obj/s  {res.get('cipher') or ''}"
                )

    results: JsonObject = {
        "meta": {
            "git": git_state(),
            "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
            "command": "bash bench/run.sh " + " ".join(sys.argv[1:]),
            "machine": f"{platform.node()} {platform.machine()} {os.cpu_count()} CPUs, "
            f"Python {platform.python_version()}, {platform.platform()}",
            "reps": args.reps,
            "wall_seconds": round(time.time() - started, 1),
            "dcmtk": "storescu/storescp 3.6.7, +tls, default profile +py (BCP 195 non-downgrading)"
            f", -pdu {DCMTK_PDU}, storescp +B, RSA-2048 PKI; TLS version pinned via "
            "OPENSSL_CONF (MaxProtocol / Ciphersuites)",
        },
        "scenarios": {},
    }
    for sname in chosen:
        ds, tls, desc = all_scenarios[sname]
        rows: dict[str, JsonObject] = {}
        for leg in legs:
            if samples[sname][leg.key]:
                rows[leg.key] = {"label": leg.label, **summarise(samples[sname][leg.key], ds)}
        results["scenarios"][sname] = {
            "description": desc,
            "objects": ds.count,
            "bytes": ds.total_bytes,
            "rows": rows,
            "ratios": ratios(rows),
            "errors": errors[sname],
        }
    results["load"] = load_results
    results["commands"] = command_results
    if args.merge and (Path(args.out) / "results.json").exists():
        old = json.loads((Path(args.out) / "results.json").read_text())
        results["meta"] = (
            {**old.get("meta", {}), "merged": results["meta"]}
            if not results["scenarios"]
            else results["meta"]
        )
        results["scenarios"] = {**old.get("scenarios", {}), **results["scenarios"]}
        results["load"] = {**old.get("load", {}), **load_results}
        results["commands"] = {**old.get("commands", {}), **command_results}
    write_report(results, Path(args.out))
    log(f"done in {time.time() - started:.0f}s; wrote {args.out}/results.md")
    print((Path(args.out) / "results.md").read_text())


if __name__ == "__main__":
    # bench/commands.py imports this module's helpers as `bench`: one module, not a second copy
    sys.modules.setdefault("bench", sys.modules[__name__])
    main()
