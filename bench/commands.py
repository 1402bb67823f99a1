"""As users run them: whole commands timed by the wall clock, start-up included (issue 15).

Two scenarios beside bench.py's in-process ones:

- ``process-512k`` and ``process-large``: ``dicomtls store DIR`` into ``dicomtls serve`` against
  ``storescu +sd DIR`` into ``storescp +B`` (tuned: ``TCP_NODELAY=1``, ``-pdu 131072``). The SCP
  is started and listening before the clock starts; the clock runs from the client command's
  exec to its exit (interpreter start-up, imports, reading the PKI, scanning the folder,
  connect, handshake, association, every C-STORE, release).
- ``startup``: ``dicomtls --version``, ``dicomtls echo --help``, ``dicomtls store --help`` and,
  for scale, ``storescu --version`` and ``python -c pass``.

Python's bytecode cache is on for both, as on a user's machine (this environment sets
PYTHONDONTWRITEBYTECODE=1 for development; it is removed from the children's environment), and
one untimed run before the timed ones writes the cache.
"""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from bench import (
    DICOMTLS,
    MB,
    PY,
    JsonObject,
    Leg,
    free_port,
    log,
    med,
    stop,
    storescu_cmd,
    verify,
)

if TYPE_CHECKING:
    from bench import Bench, DataSet


def user_env(base: dict[str, str] | None = None) -> dict[str, str]:
    """The environment a user's shell gives a command: bytecode cache on."""
    env = dict(os.environ if base is None else base)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    return env


@dataclass(frozen=True)
class CommandLeg:
    key: str
    label: str
    leg: Leg  # the SCP and PKI, as bench.py starts them


COMMAND_LEGS = [
    CommandLeg(
        "ours_durable",
        "dicomtls store -> dicomtls serve (durable, the default)",
        Leg("cmd_ours_durable", "", "ours-durable", "ours-cmd", "ec"),
    ),
    CommandLeg(
        "ours_relaxed",
        "dicomtls store -> dicomtls serve --fsync never",
        Leg("cmd_ours_relaxed", "", "ours-relaxed", "ours-cmd", "ec"),
    ),
    CommandLeg(
        "dcmtk_tuned",
        "storescu -> storescp +B, TCP_NODELAY=1, -pdu 131072",
        Leg("cmd_dcmtk_nodelay", "", "dcmtk", "dcmtk-cmd", "rsa"),
    ),
]


class Commands:
    """Runs the whole-process legs with bench.py's SCPs, PKIs and verification."""

    def __init__(self, bench: Bench, reps: int) -> None:
        self.b, self.reps = bench, reps

    def client(self, leg: Leg, port: int, directory: Path) -> list[str]:
        pki = self.b.pki[leg.pki]
        if leg.scu == "ours-cmd":
            return [
                DICOMTLS,
                "store",
                "127.0.0.1",
                str(port),
                str(directory),
                "--tls-cert",
                str(pki / "client-chain.pem"),
                "--tls-key",
                str(pki / "client.key"),
                "--ca",
                str(pki / "ca.pem"),
            ]
        return [
            *storescu_cmd(pki, "STORESCP"),
            "+sd",
            "+sp",
            "*.dcm",
            "127.0.0.1",
            str(port),
            str(directory),
        ]

    def once(self, cleg: CommandLeg, ds: DataSet, directory: Path, *, check: bool) -> float:
        """One run: a fresh SCP, the client command timed from exec to exit, then verified."""
        leg = cleg.leg
        recv = self.b.recv_root / leg.key
        shutil.rmtree(recv, ignore_errors=True)
        recv.mkdir(parents=True)
        os.sync()  # untimed: no run pays for an earlier run's write-back
        port = free_port()
        env = user_env(self.b.env(leg, "tls13"))
        with (self.b.logs / f"{leg.key}-{ds.name}.log").open("w") as logf:
            scp = self.b._start_scp(leg, "tls13", self.b.pki[leg.pki], port, recv, ds, env, logf)
            try:
                command = self.client(leg, port, directory)
                started = time.perf_counter()
                done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=900)
                elapsed = time.perf_counter() - started
            finally:
                stop(scp)
        if done.returncode != 0:
            raise RuntimeError(f"{command[0]} exited {done.returncode}: {done.stderr[-1500:]}")
        if check:
            verify(recv / "objects" if leg.scp.startswith("ours") else recv, ds)
        shutil.rmtree(recv, ignore_errors=True)
        return elapsed

    def scenario(self, ds: DataSet, description: str) -> JsonObject:
        """Every leg, ``reps`` times, after one untimed warm-up run each (bytecode, page cache)."""
        one = ds.directory.parent / f"{ds.directory.name}-first"
        if not one.exists():  # the warm-up sends a single object
            one.mkdir()
            os.link(ds.directory / ds.objects[0]["file"], one / ds.objects[0]["file"])
        rows: dict[str, JsonObject] = {}
        for cleg in COMMAND_LEGS:
            self.once(cleg, ds, one, check=False)
            seconds = []
            for rep in range(self.reps):
                seconds.append(self.once(cleg, ds, ds.directory, check=True))
                log(
                    f"process {ds.name} {cleg.key:13s} rep {rep + 1}/{self.reps}: {seconds[-1]:.2f} s"
                )
            mbps = [ds.total_bytes / MB / s for s in seconds]
            rows[cleg.key] = {
                "label": cleg.label,
                "seconds": med(seconds),
                "mbps": med(mbps),
                "samples": seconds,
            }
        return {
            "description": description,
            "objects": ds.count,
            "bytes": ds.total_bytes,
            "rows": rows,
        }


STARTUP = [
    ("dicomtls --version", [DICOMTLS, "--version"]),
    ("dicomtls echo --help", [DICOMTLS, "echo", "--help"]),
    ("dicomtls store --help", [DICOMTLS, "store", "--help"]),
    ("storescu --version", ["storescu", "--version"]),
    ("python -c pass (the interpreter alone)", [PY, "-c", "pass"]),
]


def startup(reps: int) -> JsonObject:
    """Wall clock of each command, ``reps`` times after one untimed run that writes the cache."""
    env = user_env()
    rows: dict[str, JsonObject] = {}
    for label, command in STARTUP:
        subprocess.run(command, capture_output=True, env=env, check=True)
        seconds = []
        for _ in range(reps):
            started = time.perf_counter()
            subprocess.run(command, capture_output=True, env=env, check=True)
            seconds.append(time.perf_counter() - started)
        rows[label] = {"seconds": med(seconds), "samples": seconds}
        log(f"startup {label:40s} {statistics.median(seconds) * 1000:6.0f} ms")
    return {"description": f"wall clock of each command, median of {reps}", "rows": rows}


def report(process: dict[str, JsonObject], start: JsonObject | None) -> list[str]:
    """Markdown for the whole-process and start-up scenarios, issue 15's targets marked."""
    lines: list[str] = []
    for name, sc in process.items():
        rows = sc["rows"]
        lines += [
            f"## {name}: {sc['description']}",
            "",
            f"Command: `{sc.get('command', '?')}` ({sc.get('date', '')})",
            "",
            "| command pair | seconds median (min-max) | MB/s median |",
            "|---|---|---|",
        ]
        for row in rows.values():
            s = row["seconds"]
            lines.append(
                f"| {row['label']} | **{s['median']:.2f}** ({s['min']:.2f}-{s['max']:.2f}) | "
                f"{row['mbps']['median']:.0f} |"
            )
        tuned = rows.get("dcmtk_tuned", {}).get("seconds", {}).get("median")
        lines += ["", "| target | value | met |", "|---|---|---|"]
        for key, what in (("ours_durable", "durable"), ("ours_relaxed", "relaxed")):
            ours = rows.get(key, {}).get("seconds", {}).get("median")
            ratio = None if not ours or not tuned else tuned / ours
            met = "" if ratio is None else ("yes" if ratio >= 1.0 else "**no**")
            shown = "-" if ratio is None else f"{ratio:.2f}"
            lines.append(
                f"| ours ({what}) ≥ 1.0x tuned DCMTK (its seconds / ours) | {shown} | {met} |"
            )
        lines.append("")
    if start:
        lines += [
            f"## startup: {start['description']}",
            "",
            f"Command: `{start.get('command', '?')}` ({start.get('date', '')})",
            "",
            "| command | ms median (min-max) | target | met |",
            "|---|---|---|---|",
        ]
        for label, row in start["rows"].items():
            s = row["seconds"]
            target = label in ("dicomtls --version", "dicomtls echo --help")
            met = ("yes" if s["median"] <= 0.25 else "**no**") if target else ""
            lines.append(
                f"| {label} | **{s['median'] * 1000:.0f}** ({s['min'] * 1000:.0f}-"
                f"{s['max'] * 1000:.0f}) | {'≤ 250' if target else ''} | {met} |"
            )
        lines.append("")
    return lines
