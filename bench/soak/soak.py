"""Soak test: a real ``dicomtls serve`` under 50 concurrent mutual-TLS clients for a long while.

Two nodes run as subprocesses on loopback, each with its own temporary store and one shared
test PKI: SOAK (the node under test) and DEST (its C-MOVE destination). Client processes run
asyncio tasks that open associations, do a few operations (C-ECHO, C-STORE of 64-512 KB
objects, C-FIND and C-MOVE at study level), release, and start over, with a think time between
operations. Every ``--sample-seconds`` the SOAK node's RSS and open file descriptors (from
/proc/PID/status and /proc/PID/fd), and the operations and failures so far, go into a CSV; at
the end a PNG plots RSS and fds over time and summary.md gives the numbers.

Exit status: 0 when every operation succeeded and no leak shows; 1 on any failure, a node
that died, or a leak (fds at the end well above the warm-up level, or RSS still growing).

    python bench/soak/soak.py --minutes 20
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import contextvars
import csv
import datetime as dt
import multiprocessing as mp
import os
import random
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
EXE = str(Path(sys.executable).with_name("dicomtls"))
KINDS = ("associate", "echo", "store", "find", "move")
#: How often each operation is picked (a new association is opened every 1..8 operations).
WEIGHTS = {"echo": 25, "store": 40, "find": 20, "move": 15}
CT = "1.2.840.10008.5.1.4.1.1.2"
EXPLICIT, IMPLICIT = "1.2.840.10008.1.2.1", "1.2.840.10008.1.2"


# --- the two nodes ----------------------------------------------------------------------------


class ServeProcess:
    """``dicomtls serve`` as a subprocess; started when it says it listens, its log kept."""

    def __init__(self, name: str, work: Path, port: int, pki: Path, *extra: str) -> None:
        store = work / f"store-{name.lower()}"
        self.name, self.port, self.log_path = name, port, work / f"{name.lower()}.log"
        args = [
            EXE,
            "serve",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--ae-title",
            name,
            "--store",
            str(store),
            "--tls-cert",
            str(pki / "server-chain.pem"),
            "--tls-key",
            str(pki / "server.key"),
            "--ca",
            str(pki / "ca.pem"),
            *extra,
        ]
        self.proc = subprocess.Popen(
            args, cwd=work, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
        self.lines: list[str] = []
        assert self.proc.stdout is not None
        for line in self.proc.stdout:  # the node says when it listens: no sleeping
            self.lines.append(line)
            if "listening on" in line:
                break
        else:
            raise SystemExit(f"{name} did not start:\n{''.join(self.lines)}")
        self._drain = threading.Thread(target=self._read, daemon=True)
        self._drain.start()

    def _read(self) -> None:  # drain all along: an unread pipe would stall the node
        assert self.proc.stdout is not None
        with self.log_path.open("w") as log:
            log.writelines(self.lines)
            for line in self.proc.stdout:
                log.write(line)
                log.flush()

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self) -> int | None:
        if self.alive():
            self.proc.send_signal(signal.SIGTERM)
        try:
            code = self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            code = self.proc.wait(timeout=10)
        self._drain.join(timeout=10)
        return code


def free_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def rss_and_fds(pid: int) -> tuple[float, int]:
    """Resident set size in MiB (VmRSS) and the number of open file descriptors."""
    rss_kb = 0
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                rss_kb = int(line.split()[1])
                break
    return rss_kb / 1024, len(os.listdir(f"/proc/{pid}/fd"))


# --- the data ---------------------------------------------------------------------------------


@dataclass
class Study:
    uid: str
    files: list[Path] = field(default_factory=list)


def make_studies(folder: Path, studies: int, per_study: int, seed: int) -> list[Study]:
    """``studies`` studies of ``per_study`` CT objects each, 64-512 KB of pixel data apiece."""
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import UID, ExplicitVRLittleEndian, generate_uid

    rng = random.Random(seed)
    folder.mkdir(parents=True, exist_ok=True)
    made = []
    for s in range(studies):
        study = Study(generate_uid())
        series = generate_uid()
        for i in range(per_study):
            size = rng.randrange(64, 513) * 1024
            ds = Dataset()
            ds.SOPClassUID, ds.SOPInstanceUID = CT, generate_uid()
            ds.PatientName, ds.PatientID = f"Soak^{s:03d}", f"SOAK{s:03d}"
            ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.Modality = study.uid, series, "CT"
            ds.StudyDate, ds.InstanceNumber = "20240101", i + 1
            ds.BitsAllocated, ds.SamplesPerPixel, ds.Columns = 8, 1, 1024
            ds.Rows = size // 1024
            ds.PixelData = rng.randbytes(size)
            ds.file_meta = FileMetaDataset()
            ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
            ds.file_meta.MediaStorageSOPClassUID = UID(CT)
            ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
            path = folder / f"s{s:03d}-{i}.dcm"
            ds.save_as(path, enforce_file_format=True)
            study.files.append(path)
        made.append(study)
    return made


# --- clients ----------------------------------------------------------------------------------


@dataclass
class ClientPlan:
    port: int
    pki: Path
    studies: list[tuple[str, list[str]]]
    clients: int
    think: tuple[float, float]
    max_operations: int
    seed: int
    clients_per_address: int


def _tls(pki: Path) -> Any:
    from dicomtls.tls.settings import TLSSettings

    return TLSSettings(
        certificate=pki / "client-chain.pem",
        private_key=pki / "client.key",
        ca_files=pki / "ca.pem",
    )


def _proposals() -> list[Any]:
    from dicomtls.net.association import default_proposals
    from dicomtls.net.qr_scu import QueryModel
    from dicomtls.ul.acse import Proposal

    qr = QueryModel.STUDY_ROOT
    return [
        *default_proposals([CT]),
        Proposal(qr.find_uid, (EXPLICIT,)),
        Proposal(qr.move_uid, (EXPLICIT,)),
    ]


def _study_query(uid: str) -> Any:
    from pydicom.dataset import Dataset

    ds = Dataset()
    ds.QueryRetrieveLevel = "STUDY"
    ds.StudyInstanceUID = uid
    ds.PatientID = ""
    ds.StudyDate = ""
    return ds


#: The source address a client task connects from (set per task, read by the patched connect).
SOURCE = contextvars.ContextVar[str | None]("SOURCE", default=None)


def _connect_from_source_address(loop: asyncio.AbstractEventLoop) -> None:
    """Make each client task connect from its own loopback address (127.0.1.N).

    The node admits at most 20 associations per peer IP address (``Limits.max_per_peer``, not
    settable from ``dicomtls serve``), so 50 clients from 127.0.0.1 would be refused with
    "local limit exceeded". A site's clients are several hosts: we give each group of clients
    its own address on the loopback network (127.0.0.0/8 is all loopback on Linux).
    """
    create_connection = loop.create_connection

    async def from_source(*args: Any, **kwargs: Any) -> Any:
        source = SOURCE.get()
        if source is not None and "local_addr" not in kwargs and "sock" not in kwargs:
            kwargs["local_addr"] = (source, 0)
        return await create_connection(*args, **kwargs)

    loop.create_connection = from_source  # type: ignore[method-assign]


class Counters:
    """Operations and failures per kind, shared by every client process."""

    def __init__(self, ctx: Any) -> None:
        self.array = ctx.Array("q", 2 * len(KINDS) + 1)  # ok per kind, failed per kind, bytes

    def add(self, kind: str, ok: bool, nbytes: int = 0) -> None:
        index = KINDS.index(kind) + (0 if ok else len(KINDS))
        with self.array.get_lock():
            self.array[index] += 1
            self.array[-1] += nbytes

    def snapshot(self) -> tuple[dict[str, int], dict[str, int], int]:
        with self.array.get_lock():
            values = list(self.array)
        ok = dict(zip(KINDS, values[: len(KINDS)], strict=True))
        failed = dict(zip(KINDS, values[len(KINDS) : 2 * len(KINDS)], strict=True))
        return ok, failed, values[-1]


async def _client(
    number: int, plan: ClientPlan, counters: Counters, stop: Any, errors: Any, rng: random.Random
) -> None:
    from dicomtls.net.association import associate
    from dicomtls.net.qr_scu import QueryModel

    tls, proposals = _tls(plan.pki), _proposals()
    SOURCE.set(f"127.0.1.{1 + number % 1000 // plan.clients_per_address + 10 * (number // 1000)}")
    kinds, weights = list(WEIGHTS), list(WEIGHTS.values())

    def failed(kind: str, why: str) -> None:
        counters.add(kind, False)
        errors.put(f"client {number} {kind}: {why}")

    await asyncio.sleep(rng.uniform(0, plan.think[1]))  # spread the first connections: pacing
    while not stop.is_set():
        ok, _, _ = counters.snapshot()
        if sum(ok.values()) >= plan.max_operations:
            return
        try:
            assoc = await associate(
                "127.0.0.1",
                plan.port,
                tls,
                calling_ae=f"SOAK{number:03d}",
                called_ae="SOAK",
                proposals=proposals,
            )
        except Exception as exc:
            failed("associate", repr(exc))
            await asyncio.sleep(plan.think[1])  # pacing after a failure, not synchronisation
            continue
        counters.add("associate", True)
        kind = "associate"
        try:
            for _ in range(rng.randint(1, 8)):
                if stop.is_set():
                    break
                kind = rng.choices(kinds, weights)[0]
                study_uid, files = rng.choice(plan.studies)
                if kind == "echo":
                    status = await assoc.echo()
                    good, why, nbytes = status == 0, f"status 0x{status:04X}", 0
                elif kind == "store":
                    path = Path(rng.choice(files))
                    status = await assoc.store(path)
                    good, why, nbytes = status == 0, f"status 0x{status:04X}", path.stat().st_size
                elif kind == "find":
                    matches = [
                        m async for m in assoc.find(_study_query(study_uid), QueryModel.STUDY_ROOT)
                    ]
                    found = [str(m.get("StudyInstanceUID", "")) for m in matches]
                    good, why, nbytes = (
                        found == [study_uid],
                        f"matches {found}, wanted [{study_uid}]",
                        0,
                    )
                else:
                    result = await assoc.move(
                        _study_query(study_uid), "DEST", QueryModel.STUDY_ROOT
                    )
                    good = result.ok and (result.completed, result.failed) == (len(files), 0)
                    why = f"status 0x{result.status:04X}, {result.completed} completed, {result.failed} failed"
                    nbytes = 0
                if good:
                    counters.add(kind, True, nbytes)
                else:
                    failed(kind, why)
                await asyncio.sleep(rng.uniform(*plan.think))  # think time: pacing the workload
            kind = "associate"  # a failed release counts against the association
            await assoc.release()
        except Exception as exc:
            failed(kind, repr(exc))
            with contextlib.suppress(Exception):
                await assoc.abort()


def client_process(
    index: int, plan: ClientPlan, counters: Counters, stop: Any, errors: Any
) -> None:
    """One process running ``plan.clients`` clients as asyncio tasks until ``stop`` is set."""
    rng = random.Random(plan.seed * 1000 + index)

    async def main() -> None:
        _connect_from_source_address(asyncio.get_running_loop())
        await asyncio.gather(
            *(
                _client(index * 1000 + n, plan, counters, stop, errors, random.Random(rng.random()))
                for n in range(plan.clients)
            )
        )

    asyncio.run(main())


# --- one store of every object before the clock starts ----------------------------------------


async def seed_node(port: int, pki: Path, studies: list[Study]) -> None:
    from dicomtls.net.association import associate

    assoc = await associate(
        "127.0.0.1",
        port,
        _tls(pki),
        calling_ae="SOAKSEED",
        called_ae="SOAK",
        proposals=_proposals(),
    )
    async with assoc:
        for study in studies:
            for path in study.files:
                status = await assoc.store(path)
                if status != 0:
                    raise SystemExit(f"seeding {path}: status 0x{status:04X}")


# --- the run ----------------------------------------------------------------------------------

COLUMNS = [
    "elapsed_s",
    "phase",
    "rss_mib",
    "fds",
    "dest_rss_mib",
    "dest_fds",
    "operations",
    "failures",
    *[f"ok_{k}" for k in KINDS],
    *[f"failed_{k}" for k in KINDS],
    "bytes_stored",
]


def source_state() -> str:
    """The commit and whether src/ differs from it (read-only git; no index refresh)."""
    root = HERE.parents[1]
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=root,
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "--no-optional-locks", "status", "--porcelain", "--", "src"],
            cwd=root,
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout.split("\n")
    except (OSError, subprocess.SubprocessError):
        return "unknown (no git)"
    changed = [line[3:] for line in dirty if line.strip()]
    return f"commit {head}" + (
        f", with uncommitted changes in {', '.join(changed)}" if changed else ""
    )


def slope_per_minute(points: list[tuple[float, float]]) -> float:
    """Least-squares slope of (seconds, value), per minute."""
    if len(points) < 2:
        return 0.0
    n = len(points)
    mx = sum(x for x, _ in points) / n
    my = sum(y for _, y in points) / n
    sxx = sum((x - mx) ** 2 for x, _ in points)
    return 60 * sum((x - mx) * (y - my) for x, y in points) / sxx if sxx else 0.0


def plot(rows: list[dict[str, Any]], warm_s: float, png: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    minutes = [r["elapsed_s"] / 60 for r in rows]
    fig, (top, middle, bottom) = plt.subplots(3, 1, figsize=(11, 9), sharex=True)
    top.plot(minutes, [r["rss_mib"] for r in rows], marker=".", label="SOAK node (under test)")
    top.plot(
        minutes,
        [r["dest_rss_mib"] for r in rows],
        marker=".",
        alpha=0.6,
        label="DEST node (C-MOVE target)",
    )
    top.set_ylabel("RSS (MiB)")
    top.set_ylim(bottom=0)
    middle.plot(minutes, [r["fds"] for r in rows], marker=".", color="tab:red", label="SOAK node")
    middle.plot(
        minutes,
        [r["dest_fds"] for r in rows],
        marker=".",
        color="tab:orange",
        alpha=0.6,
        label="DEST node",
    )
    middle.set_ylabel("open file descriptors")
    middle.set_ylim(bottom=0)
    bottom.plot(
        minutes, [r["operations"] for r in rows], marker=".", color="tab:green", label="operations"
    )
    bottom.set_ylabel("operations (cumulative)")
    bottom.set_xlabel("minutes since start (load from 0; last point after the clients stopped)")
    failures = [r["failures"] for r in rows]
    ax2 = bottom.twinx()
    ax2.plot(minutes, failures, color="black", linestyle="--", label="failures")
    ax2.set_ylabel("failures (cumulative)")
    ax2.set_ylim(0, max(5, *failures))
    for ax in (top, middle, bottom):
        ax.axvline(warm_s / 60, color="grey", linestyle=":", label="end of warm-up")
        ax.grid(alpha=0.3)
        ax.legend(loc={top: "lower right", middle: "center left"}.get(ax, "upper left"), fontsize=8)
    ax2.legend(loc="center right", fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(png, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--minutes", type=float, default=20.0, help="load duration [20]")
    parser.add_argument("--clients", type=int, default=50, help="concurrent TLS clients [50]")
    parser.add_argument("--processes", type=int, default=2, help="client processes [2]")
    parser.add_argument(
        "--max-operations", type=int, default=1_000_000, help="stop after this many [1e6]"
    )
    parser.add_argument("--studies", type=int, default=60, help="distinct studies [60]")
    parser.add_argument("--per-study", type=int, default=3, help="objects per study [3]")
    parser.add_argument(
        "--think",
        type=float,
        nargs=2,
        default=(0.2, 1.2),
        metavar=("MIN", "MAX"),
        help="seconds between a client's operations [0.2 1.2]",
    )
    parser.add_argument(
        "--clients-per-address",
        type=int,
        default=10,
        help="clients sharing one loopback source address, 127.0.1.N [10]; the node "
        "admits 20 associations per peer address",
    )
    parser.add_argument("--sample-seconds", type=float, default=10.0)
    parser.add_argument(
        "--warmup-minutes",
        type=float,
        default=None,
        help="leak baseline is taken after this [min(3, minutes/5)]",
    )
    parser.add_argument(
        "--fd-margin",
        type=int,
        default=20,
        help="fds at the end may exceed the warm-up level by this much [20]",
    )
    parser.add_argument(
        "--rss-growth-mib",
        type=float,
        default=64.0,
        help="RSS growth after warm-up that counts as a leak, MiB [64]",
    )
    parser.add_argument("--out", type=Path, default=HERE / "results")
    parser.add_argument("--seed", type=int, default=2024)
    args = parser.parse_args(argv)
    warm_s = 60 * (
        args.warmup_minutes if args.warmup_minutes is not None else min(3.0, args.minutes / 5)
    )
    args.out.mkdir(parents=True, exist_ok=True)
    csv_path, png_path, md_path = (
        args.out / "soak.csv",
        args.out / "soak.png",
        args.out / "summary.md",
    )

    with tempfile.TemporaryDirectory(prefix="dicomtls-soak-") as tmp:
        work = Path(tmp)
        pki = work / "pki"
        init = subprocess.run([EXE, "pki", "init", str(pki)], capture_output=True, text=True)
        if init.returncode != 0:
            raise SystemExit(f"pki init failed: {init.stdout}{init.stderr}")
        source = source_state()
        studies = make_studies(work / "objects", args.studies, args.per_study, args.seed)
        dest = ServeProcess("DEST", work, free_port(), pki)
        soak = ServeProcess(
            "SOAK", work, free_port(), pki, "--move-destination", f"DEST=127.0.0.1:{dest.port}"
        )
        print(
            f"soak: SOAK pid {soak.pid} on {soak.port}, DEST pid {dest.pid} on {dest.port}; "
            f"{len(studies) * args.per_study} objects in {len(studies)} studies; work dir {work}",
            flush=True,
        )
        asyncio.run(seed_node(soak.port, pki, studies))

        ctx = mp.get_context("spawn")
        counters, stop, errors = Counters(ctx), ctx.Event(), ctx.Queue()
        per_process = [
            args.clients // args.processes + (1 if i < args.clients % args.processes else 0)
            for i in range(args.processes)
        ]
        plan = dict(
            port=soak.port,
            pki=pki,
            think=tuple(args.think),
            max_operations=args.max_operations,
            clients_per_address=args.clients_per_address,
            studies=[(s.uid, [str(f) for f in s.files]) for s in studies],
            seed=args.seed,
        )
        workers = [
            ctx.Process(
                target=client_process,
                args=(i, ClientPlan(clients=n, **plan), counters, stop, errors),
            )
            for i, n in enumerate(per_process)
        ]
        rows: list[dict[str, Any]] = []
        error_lines: list[str] = []
        node_died = ""

        def sample(elapsed: float, phase: str) -> dict[str, Any]:
            rss, fds = rss_and_fds(soak.pid)
            d_rss, d_fds = rss_and_fds(dest.pid)
            ok, failed, nbytes = counters.snapshot()
            row = {
                "elapsed_s": round(elapsed, 1),
                "phase": phase,
                "rss_mib": round(rss, 1),
                "fds": fds,
                "dest_rss_mib": round(d_rss, 1),
                "dest_fds": d_fds,
                "operations": sum(ok[k] for k in KINDS if k != "associate"),
                "failures": sum(failed.values()),
                "bytes_stored": nbytes,
                **{f"ok_{k}": ok[k] for k in KINDS},
                **{f"failed_{k}": failed[k] for k in KINDS},
            }
            rows.append(row)
            with csv_path.open("w", newline="") as out:
                writer = csv.DictWriter(out, fieldnames=COLUMNS)
                writer.writeheader()
                writer.writerows(rows)
            return row

        started_at = dt.datetime.now(dt.UTC)
        start = time.monotonic()
        sample(0.0, "start")
        for worker in workers:
            worker.start()
        deadline = start + 60 * args.minutes
        next_sample = start + args.sample_seconds
        try:
            while time.monotonic() < deadline:
                time.sleep(
                    max(0.0, min(next_sample, deadline) - time.monotonic())
                )  # sampling interval
                while not errors.empty():
                    error_lines.append(errors.get_nowait())
                if not (soak.alive() and dest.alive()):
                    node_died = f"SOAK exit {soak.proc.poll()}, DEST exit {dest.proc.poll()}"
                    break
                if time.monotonic() >= next_sample:
                    elapsed = time.monotonic() - start
                    row = sample(elapsed, "warm-up" if elapsed < warm_s else "load")
                    print(
                        f"soak: {elapsed / 60:5.1f} min  ops {row['operations']:7d}  failures {row['failures']}"
                        f"  RSS {row['rss_mib']:7.1f} MiB  fds {row['fds']}",
                        flush=True,
                    )
                    next_sample += args.sample_seconds
                if not any(w.is_alive() for w in workers):
                    break  # --max-operations reached
        finally:
            stop.set()
            for worker in workers:
                worker.join(timeout=120)
                if worker.is_alive():
                    worker.kill()
                    error_lines.append(f"client process {worker.pid} did not stop")
        load_s = time.monotonic() - start
        while not errors.empty():
            error_lines.append(errors.get_nowait())

        # After the clients released: wait (bounded) for the node to close what they used.
        rows_load = [r for r in rows if r["phase"] == "load"] or rows[-1:]
        warm = rows_load[0]
        settle_deadline = time.monotonic() + 30
        while soak.alive() and time.monotonic() < settle_deadline:
            if rss_and_fds(soak.pid)[1] <= warm["fds"] + args.fd_margin:
                break
            time.sleep(0.5)  # polling a condition, with a deadline
        end = sample(time.monotonic() - start, "end") if soak.alive() and dest.alive() else rows[-1]
        if not node_died and not (soak.alive() and dest.alive()):
            node_died = f"SOAK exit {soak.proc.poll()}, DEST exit {dest.proc.poll()}"
        soak_exit, dest_exit = soak.stop(), dest.stop()
        soak_log = soak.log_path.read_text()
        tracebacks = soak_log.count("Traceback")

        ok, failed, nbytes = counters.snapshot()
        loaded = [r for r in rows if r["phase"] == "load"]
        rss_slope = slope_per_minute([(r["elapsed_s"], r["rss_mib"]) for r in loaded])
        fd_slope = slope_per_minute([(r["elapsed_s"], r["fds"]) for r in loaded])
        rss_max = max(r["rss_mib"] for r in rows)
        fds_max = max(r["fds"] for r in rows)
        last_load = loaded[-1] if loaded else warm
        problems = []
        if sum(failed.values()):
            problems.append(f"{sum(failed.values())} failed operation(s)")
        if node_died:
            problems.append(f"a node died: {node_died}")
        if end["fds"] > warm["fds"] + args.fd_margin:
            problems.append(f"fd leak: {end['fds']} fds at the end, {warm['fds']} after warm-up")
        if last_load["rss_mib"] - warm["rss_mib"] > args.rss_growth_mib:
            problems.append(
                f"RSS grew {last_load['rss_mib'] - warm['rss_mib']:.0f} MiB after warm-up "
                f"({rss_slope:+.2f} MiB/min)"
            )
        if tracebacks:
            problems.append(f"{tracebacks} traceback(s) in the SOAK node's log")
        plot(
            rows,
            warm_s,
            png_path,
            f"dicomtls serve soak: {args.clients} mutual-TLS clients, {load_s / 60:.1f} min, "
            f"{end['operations']} operations, {end['failures']} failures",
        )

        ops_total = sum(ok[k] for k in KINDS if k != "associate")
        lines = [
            "# dicomtls serve soak: summary",
            "",
            f"- started {started_at:%Y-%m-%d %H:%M:%S} UTC; command: `bash bench/soak/run.sh {' '.join(argv if argv is not None else sys.argv[1:])}`".rstrip(),
            f"- load: {load_s / 60:.1f} min ({load_s:.0f} s), {args.clients} concurrent mutual-TLS clients in "
            f"{args.processes} processes, think time {args.think[0]}-{args.think[1]} s, profile bcp195-rfc8996",
            f"- objects: {len(studies) * args.per_study} in {len(studies)} studies, 64-512 KB each, stored again and again "
            f"(replacing), moved to a second node (DEST) by study",
            f"- source: {source}",
            f"- warm-up (leak baseline): first {warm_s / 60:.1f} min; samples every {args.sample_seconds:.0f} s",
            "",
            "| operation | done | failed | per second |",
            "|---|---:|---:|---:|",
            *[f"| {k} | {ok[k]} | {failed[k]} | {ok[k] / load_s:.1f} |" for k in KINDS],
            f"| **all DIMSE** (echo+store+find+move) | **{ops_total}** | **{sum(failed[k] for k in KINDS if k != 'associate')}** | {ops_total / load_s:.1f} |",
            "",
            f"Data stored: {nbytes / 2**30:.2f} GiB. Failures: **{sum(failed.values())}**.",
            "",
            "| SOAK node | start | after warm-up | end of load | after clients stopped | max | slope after warm-up |",
            "|---|---:|---:|---:|---:|---:|---:|",
            f"| RSS (MiB) | {rows[0]['rss_mib']} | {warm['rss_mib']} | {last_load['rss_mib']} | {end['rss_mib']} | {rss_max} | {rss_slope:+.2f} MiB/min |",
            f"| open fds | {rows[0]['fds']} | {warm['fds']} | {last_load['fds']} | {end['fds']} | {fds_max} | {fd_slope:+.2f} /min |",
            f"| DEST RSS (MiB) | {rows[0]['dest_rss_mib']} | {warm['dest_rss_mib']} | {last_load['dest_rss_mib']} | {end['dest_rss_mib']} | {max(r['dest_rss_mib'] for r in rows)} | |",
            f"| DEST open fds | {rows[0]['dest_fds']} | {warm['dest_fds']} | {last_load['dest_fds']} | {end['dest_fds']} | {max(r['dest_fds'] for r in rows)} | |",
            "",
            f"Nodes' exit codes after SIGTERM: SOAK {soak_exit}, DEST {dest_exit}. "
            f"Tracebacks in the SOAK log: {tracebacks}.",
            "",
            f"Verdict: **{'PASS' if not problems else 'FAIL'}**"
            + ("" if not problems else ": " + "; ".join(problems)),
            "",
            f"Files: `{csv_path.name}` (one row per sample), `{png_path.name}` (RSS and fds over time).",
        ]
        if error_lines:
            lines += ["", "First failures:", "", *[f"    {e}" for e in error_lines[:20]]]
        md_path.write_text("\n".join(lines) + "\n")
        print("\n".join(lines))
        return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
