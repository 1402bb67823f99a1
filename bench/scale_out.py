"""Objects per second through one node and through three behind HAProxy (issue 16).

    .venv/bin/python -m bench.scale_out [--senders 8] [--objects 480] [--kib 128] [--reps 2]

Legs, each on fresh servers' data, the same generated CT objects, loopback only:

- ``1 node, SQLite + folder``: the embedded default, SCU straight to the node;
- ``1 node, PostgreSQL + S3, via HAProxy``: the scale-out path with one node;
- ``3 nodes, PostgreSQL + S3, via HAProxy``: the same, three nodes (leastconn).

``--senders`` associations store ``--objects`` objects in all (each its own share, with
``store_many``); a leg counts only when every object got Success, and its index rows are
counted afterwards. Besides objects/s it records how busy the machine's CPUs were during
the leg (/proc/stat), which says what a number on this machine can and cannot mean.
Results go to bench/results/scale_out.json and scale_out.md.

Servers are the tests' (tests/servers.py, tests/scale/cluster.py): PostgreSQL from Debian,
SeaweedFS (fsync on), HAProxy from Debian, ``dicomtls serve`` processes.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import json
import os
import platform
import random
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypedDict

from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid
from tests.node.site import Site, connect_to, make_site
from tests.scale.cluster import start_cluster
from tests.servers import start_postgres, start_seaweedfs

from dicomtls.node.index import Index
from dicomtls.node.index_pg import PostgresIndex

HERE = Path(__file__).resolve().parent
CT = "1.2.840.10008.5.1.4.1.1.2"


def make_objects(folder: Path, count: int, kib: int) -> list[Path]:
    folder.mkdir(parents=True)
    study, series = generate_uid(), generate_uid()
    rows = max(1, kib * 1024 // 512)
    files = []
    for n in range(count):
        ds = Dataset()
        ds.SOPClassUID, ds.SOPInstanceUID = CT, generate_uid()
        ds.PatientID, ds.PatientName = "BENCH", "Bench^Mark"
        ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.Modality = study, series, "CT"
        ds.Rows, ds.Columns, ds.BitsAllocated, ds.SamplesPerPixel = rows, 512, 8, 1
        ds.PixelData = random.Random(n).randbytes(rows * 512)
        ds.file_meta = FileMetaDataset()
        ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
        path = folder / f"{n:05d}.dcm"
        ds.save_as(path, enforce_file_format=True)
        files.append(path)
    return files


def cpu_ticks() -> tuple[int, int]:
    """(busy, total) jiffies of all CPUs since boot."""
    fields = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = fields[3] + fields[4]
    return sum(fields) - idle, sum(fields)


def _processes() -> dict[int, str]:
    found = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:
            continue
        found[int(stat.parent.name)] = text[text.index("(") + 1 : text.rindex(")")]
    return found


def cpu_by_program() -> dict[str, float]:
    """CPU seconds used so far by each program we run (the node's, PostgreSQL's, SeaweedFS's,
    HAProxy's processes, and this one: the senders)."""
    tick = os.sysconf("SC_CLK_TCK")
    wanted = {
        "dicomtls": "nodes",
        "postgres": "postgresql",
        "weed": "seaweedfs",
        "haproxy": "haproxy",
    }
    used: dict[str, float] = dict.fromkeys([*wanted.values(), "senders"], 0.0)
    for pid, name in _processes().items():
        program = "senders" if pid == os.getpid() else wanted.get(name)
        if program is None:
            continue
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        used[program] += (int(fields[11]) + int(fields[12])) / tick
    return used


async def send(site: Site, port: int, files: list[Path], senders: int) -> int:
    async def one(share: list[Path]) -> int:
        ok = 0
        async with await connect_to(site, port, "ct1", "BENCH", "PACS") as assoc:
            async for _, status in assoc.store_many(share):
                ok += status == 0
        return ok

    results = await asyncio.gather(*(one(files[n::senders]) for n in range(senders)))
    return sum(results)


class LegResult(TypedDict):
    """One run of one leg, as scale_out.json records it."""

    leg: str
    nodes: int
    objects: int
    seconds: float
    objects_per_s: float
    mb_per_s: float
    cpu_busy: float  # share of all CPUs busy during the run
    cpu_ms_per_object: dict[str, float]  # by program: nodes, postgresql, seaweedfs...


class LegSummary(TypedDict):
    """The medians of a leg's runs, and the runs."""

    objects_per_s_median: float
    cpu_busy_median: float
    cpu_ms_per_object_median: dict[str, float]
    runs: list[LegResult]


def sqlite_rows(folder: Path) -> int:
    """Instances in the one embedded node's SQLite index (read after its run)."""
    return Index(folder / "node-a" / "store" / "index.sqlite").count()


def postgres_rows(dsn: str) -> int:
    """Instances in the nodes' shared PostgreSQL index (read after their run)."""
    return PostgresIndex(dsn).count()


def leg(
    name: str,
    site: Site,
    folder: Path,
    files: list[Path],
    senders: int,
    nodes: int,
    extra: list[str],
    env: dict[str, str],
    count_rows: Callable[[], int],
) -> LegResult:
    cluster = start_cluster(site, folder, nodes, *extra, env=env)
    try:
        busy0, total0 = cpu_ticks()
        before = cpu_by_program()
        started = time.perf_counter()
        ok = asyncio.run(send(site, cluster.port, files, senders))
        seconds = time.perf_counter() - started
        busy1, total1 = cpu_ticks()
        after = cpu_by_program()
    finally:
        cluster.stop()
    rows = count_rows()
    size = sum(f.stat().st_size for f in files)
    assert ok == len(files) == rows, (name, ok, rows)
    return {
        "leg": name,
        "nodes": nodes,
        "objects": ok,
        "seconds": round(seconds, 3),
        "objects_per_s": round(ok / seconds, 1),
        "mb_per_s": round(size / seconds / 1e6, 1),
        "cpu_busy": round((busy1 - busy0) / max(1, total1 - total0), 3),
        # CPU milliseconds per object, by program: what sizing scales with
        "cpu_ms_per_object": {k: round((after[k] - before[k]) * 1000 / ok, 2) for k in after},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--senders", type=int, default=8)
    parser.add_argument("--objects", type=int, default=480)
    parser.add_argument("--kib", type=int, default=128)
    parser.add_argument("--reps", type=int, default=2)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="dicomtls-scale-bench-"))
    site = make_site(work / "pki")
    files = make_objects(work / "objects", args.objects, args.kib)
    postgres, seaweed = start_postgres(), start_seaweedfs()
    results: list[LegResult] = []
    try:
        for rep in range(args.reps):
            folder = work / f"embedded-{rep}"
            results.append(
                leg(
                    "1 node, SQLite + folder (via HAProxy)",
                    site,
                    folder,
                    files,
                    args.senders,
                    1,
                    [],
                    {},
                    functools.partial(sqlite_rows, folder),
                )
            )
            for nodes in (1, 3):
                dsn, bucket = postgres.new_database(), seaweed.new_bucket()
                results.append(
                    leg(
                        f"{nodes} node{'s' if nodes > 1 else ''}, PostgreSQL + S3 via HAProxy",
                        site,
                        work / f"scale-{nodes}-{rep}",
                        files,
                        args.senders,
                        nodes,
                        ["--index", dsn, "--objects", seaweed.url(bucket)],
                        seaweed.environment(),
                        functools.partial(postgres_rows, dsn),
                    )
                )
            print(json.dumps(results[-3:], indent=1), flush=True)
    finally:
        seaweed.stop()
        postgres.stop()
    summary: dict[str, LegSummary] = {}
    for name in dict.fromkeys(r["leg"] for r in results):
        runs = [r for r in results if r["leg"] == name]
        per_object = [r["cpu_ms_per_object"] for r in runs]
        summary[name] = {
            "objects_per_s_median": statistics.median(r["objects_per_s"] for r in runs),
            "cpu_busy_median": statistics.median(r["cpu_busy"] for r in runs),
            "cpu_ms_per_object_median": {
                k: statistics.median(p[k] for p in per_object) for k in per_object[0]
            },
            "runs": runs,
        }
    machine = {
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "kernel": platform.release(),
    }
    out = {"machine": machine, "args": vars(args), "legs": summary}
    (HERE / "results").mkdir(exist_ok=True)
    (HERE / "results" / "scale_out.json").write_text(json.dumps(out, indent=1))
    lines = [
        f"# Scale-out benchmark ({os.cpu_count()} CPUs, {args.objects} objects of "
        f"{args.kib} KiB, {args.senders} senders, median of {args.reps})",
        "",
        "| leg | objects/s | CPU busy | CPU ms per object: nodes / PostgreSQL / SeaweedFS / HAProxy / senders |",
        "| --- | ---: | ---: | --- |",
    ]
    for name, leg_summary in summary.items():
        ms = leg_summary["cpu_ms_per_object_median"]
        split = " / ".join(
            f"{ms[k]:.1f}" for k in ("nodes", "postgresql", "seaweedfs", "haproxy", "senders")
        )
        lines.append(
            f"| {name} | {leg_summary['objects_per_s_median']:.0f} | {leg_summary['cpu_busy_median']:.0%} | {split} |"
        )
    (HERE / "results" / "scale_out.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
