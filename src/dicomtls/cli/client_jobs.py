"""What the client commands do once their arguments are parsed: associate, exchange, report.

:mod:`dicomtls.cli.client` declares the commands; it imports this module only when a
command runs, so ``dicomtls store --help`` loads no TLS, network or rich tables.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Coroutine
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.table import Table

from dicomtls.cli.errors import UserError, rejection
from dicomtls.cli.logsetup import handshake_failures_said_here
from dicomtls.cli.render import make_console, print_session, shown, status_text, verify_printer
from dicomtls.dimse.part10 import Part10Error, Part10Header, read_header
from dicomtls.errors import AssociationError
from dicomtls.net.association import (
    Association,
    associate,
    default_proposals,
)
from dicomtls.net.client import Peer
from dicomtls.net.outbound import proposals_for_headers
from dicomtls.net.qr_scu import UNIQUE_KEYS, QueryModel, retrieve_proposals
from dicomtls.node.room import DEFAULT_FLOOR, Floor
from dicomtls.ul.acse import Proposal

if TYPE_CHECKING:
    from pydicom.dataset import Dataset

    from dicomtls.cli.client import Query, Target

__all__ = ["echo", "find", "get", "move", "run", "store"]

console = make_console()


async def _open(target: Target, proposals: list[Proposal], max_operations: int = 1) -> Association:
    """An association proposing ``proposals``; a rejection said in the command's terms."""
    on_verify = verify_printer(console) if target.verbose else None
    settings = target.tls.settings("client", on_verify=on_verify)
    try:
        assoc = await associate(
            target.host,
            target.port,
            settings,
            calling_ae=target.ae_title,
            called_ae=target.called_ae,
            proposals=proposals,
            max_operations=max_operations,
        )
    except AssociationError as exc:
        where = f"{target.host}:{target.port}"
        raise _rejected(exc, where, target.ae_title, target.called_ae) from exc
    if target.verbose and assoc.link.session is not None:
        print_session(console, assoc.link.session)
    return assoc


def _rejected(exc: AssociationError, peer: str, ae_title: str, called_ae: str) -> Exception:
    """A rejection in the command's terms, with the doctor's fix; other failures as they are."""
    from dicomtls.doctor.report import REJECTION_FIXES  # only a rejection needs the doctor

    reason = rejection(str(exc))
    if reason is None or reason not in REJECTION_FIXES:
        return exc
    said = {
        "CALLED_AE_NOT_RECOGNIZED": f"{peer} does not answer to called AE title {called_ae!r}",
        "CALLING_AE_NOT_RECOGNIZED": f"{peer} does not accept calling AE title {ae_title!r} "
        "(unknown to it, or bound by its access rules to another certificate)",
        "LOCAL_LIMIT_EXCEEDED": f"{peer} has as many associations as it takes",
    }[reason]
    hint = f"{REJECTION_FIXES[reason]} (dicomtls doctor says the same, step by step)"
    return UserError(f"{said}: association rejected ({reason})", hint=hint, code=reason)


def run(coroutine: Coroutine[Any, Any, int]) -> None:
    """Run a command's exchange; its result is the exit code."""
    with handshake_failures_said_here("client"):  # the command's error says it
        code = asyncio.run(coroutine)
    raise SystemExit(code)


def _session_json(assoc: Association) -> dict[str, Any] | None:
    """The negotiated link for ``--json``, its ``peer_chain`` as the peer sent it."""
    session = assoc.link.session
    return None if session is None else session.to_dict()


async def echo(target: Target, as_json: bool) -> int:
    """C-ECHO: the status and the round trip, as text or JSON; 0 on Success."""
    started = time.perf_counter()
    async with await _open(target, default_proposals()) as assoc:
        status = await assoc.echo()
        elapsed = time.perf_counter() - started
        if as_json:
            print(
                json.dumps(
                    {
                        "status": status,
                        "ok": status == 0,
                        "seconds": round(elapsed, 4),
                        "tls": _session_json(assoc),
                    }
                )
            )
        else:
            console.print(
                f"C-ECHO {shown(target.host)}:{target.port} ({shown(target.called_ae)}): "
                f"{status_text(status)} "
                f"in {elapsed * 1000:.0f} ms"
            )
    return 0 if status == 0 else 1


#: Skipped files the summary names one by one, at most (``--json`` lists them all).
SKIPPED_NAMED = 10


def collect(paths: tuple[Path, ...]) -> tuple[list[Part10Header], list[tuple[Path, str]]]:
    """The header of every DICOM file under ``paths``, and the others with why each is
    skipped; none at all is a mistake said before connecting (an empty summary, exit code 0,
    looked like success).

    Each file is read once here: its header gives the contexts to propose and is what
    ``store_many`` sends from, so no file is opened and parsed twice before its data.
    """
    candidates: list[Path] = []
    for path in paths:
        candidates += sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    good, skipped = [], []
    for path in candidates:
        try:
            good.append(read_header(path))
        except Part10Error as exc:
            skipped.append((path, str(exc)))
    if not good:
        raise _nothing_to_send(paths, len(skipped), skipped[0][1] if skipped else "")
    return good, skipped


def _nothing_to_send(paths: tuple[Path, ...], skipped: int, first_reason: str) -> UserError:
    named = ", ".join(str(p) for p in paths)
    said = f"{skipped} file(s) there, none a DICOM file ({first_reason})" if skipped else "no files"
    return UserError(
        f"nothing to send from {named}: {said}",
        hint="give the files or folders that hold the DICOM (Part 10) files",
        code="NO_DICOM_FILES",
    )


def _file_size(header: Part10Header) -> int:
    return header.dataset_offset + header.dataset_length


async def store(target: Target, as_json: bool, paths: tuple[Path, ...], window: int) -> int:
    """C-STORE every DICOM file under ``paths`` on one association; 1 if any failed."""
    headers, skipped = collect(paths)
    total = sum(_file_size(h) for h in headers)
    started = time.perf_counter()
    async with await _open(target, proposals_for_headers(headers), window) as assoc:
        results = await _send_all(assoc, headers, total, as_json)
    elapsed = time.perf_counter() - started
    failed = [(p, o) for p, o in results if o != 0]
    if as_json:
        print(
            json.dumps(
                {
                    "stored": len(results) - len(failed),
                    "failed": [
                        {"path": str(p), "status": o, "comment": getattr(o, "comment", None)}
                        for p, o in failed
                    ],
                    "skipped_non_dicom": [str(p) for p, _ in skipped],
                    "bytes": total,
                    "seconds": round(elapsed, 3),
                }
            )
        )
    else:
        _store_summary(results, skipped, total, elapsed)
    return 1 if failed else 0


async def _send_all(
    assoc: Association, headers: list[Part10Header], total: int, as_json: bool
) -> list[tuple[Path, int | str]]:
    """Each file's outcome: its status, or why it was not stored; the bar shows the bytes."""
    sizes = {h.path: _file_size(h) for h in headers}
    results: list[tuple[Path, int | str]] = []
    with _progress(as_json) as progress:
        task = progress.add_task(f"0/{len(headers)} objects", total=total)
        try:
            async for path, outcome in assoc.store_many(headers):
                results.append((path, outcome if isinstance(outcome, int) else str(outcome)))
                progress.update(
                    task, advance=sizes[path], description=f"{len(results)}/{len(headers)} objects"
                )
        except Exception as exc:  # the association ended: the rest fail with its reason
            answered = {p for p, _ in results}
            results += [(h.path, str(exc)) for h in headers if h.path not in answered]
    return results


def _progress(as_json: bool) -> Any:
    """The transfer's progress bar, gone when done; none with ``--json`` or where the output
    is not a terminal (a bar there prints nothing, yet it would load rich's live display and
    redraw itself ten times a second on a thread)."""
    if as_json or not console.is_terminal:
        return _NoProgress()
    from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TransferSpeedColumn

    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        console=console,
        transient=True,
    )


class _NoProgress(contextlib.nullcontext["_NoProgress"]):
    """What :func:`_progress` gives where no bar is shown: the calls a bar takes, doing nothing."""

    def __init__(self) -> None:
        super().__init__(self)

    def add_task(self, description: str, total: int) -> int:
        return 0

    def update(self, task: int, advance: int, description: str) -> None:
        pass


def _store_summary(
    results: list[tuple[Path, int | str]],
    skipped: list[tuple[Path, str]],
    total: int,
    elapsed: float,
) -> None:
    table = Table(title="C-STORE summary")
    table.add_column("result")
    table.add_column("objects", justify="right")
    ok = sum(1 for _, o in results if o == 0)
    table.add_row("stored (Success)", str(ok))
    table.add_row("failed", str(len(results) - ok))
    table.add_row("skipped (not DICOM)", str(len(skipped)))
    console.print(table)
    for path, outcome in results:
        if outcome != 0:
            reason = _answered_text(outcome) if isinstance(outcome, int) else outcome
            console.print(f"[red]failed[/red] {shown(path)}: {shown(reason)}")
    _say_skipped(skipped)
    rate = total / elapsed / 1e6 if elapsed else 0.0
    console.print(f"{total / 1e6:.1f} MB in {elapsed:.2f} s ({rate:.1f} MB/s)")


def _answered_text(status: int) -> str:
    """The status in words, and the peer's own reason when it gave one (Error Comment)."""
    comment = getattr(status, "comment", None)
    return status_text(status) + (f": the node says {comment!r}" if comment else "")


def _say_skipped(skipped: list[tuple[Path, str]]) -> None:
    """Which files were not sent and why (a count alone sent the user looking)."""
    for _, why in skipped[:SKIPPED_NAMED]:
        console.print(f"[yellow]skipped[/yellow] {shown(why)}")
    if len(skipped) > SKIPPED_NAMED:
        console.print(f"and {len(skipped) - SKIPPED_NAMED} more skipped (--json lists them all)")


def _model(name: str) -> QueryModel:
    return QueryModel.STUDY_ROOT if name == "study" else QueryModel.PATIENT_ROOT


def _asked(query: Query) -> tuple[Dataset, tuple[str, ...]]:
    """The identifier to send and the columns to show; with no key given, the level's unique
    key (else each match would show only its level's name)."""
    if query.columns:
        return query.identifier, query.columns
    unique = UNIQUE_KEYS[query.level.upper()]
    setattr(query.identifier, unique, "")
    return query.identifier, (unique,)


async def find(target: Target, query: Query, as_json: bool) -> int:
    """C-FIND: the matches as a table of the asked keys, or as JSON."""
    (identifier, columns), qr = _asked(query), _model(query.model)
    proposals = [Proposal(qr.find_uid, ("1.2.840.10008.1.2.1", "1.2.840.10008.1.2"))]
    async with await _open(target, proposals) as assoc:
        matches = [m async for m in assoc.find(identifier, qr)]
    if as_json:
        print(json.dumps([{e.keyword: str(e.value) for e in m} for m in matches]))
    else:
        _print_matches(query.level, columns, matches)
    return 0


def _print_matches(level: str, asked: tuple[str, ...], matches: list[Dataset]) -> None:
    table = Table(title=f"{len(matches)} match(es) at {level} level")
    columns = [c for c in asked if c != "QueryRetrieveLevel"] or ["QueryRetrieveLevel"]
    for column in columns:
        table.add_column(column)
    for match in matches:  # the peer's values: markup and control characters escaped
        table.add_row(*(shown(match.get(c, "")) for c in columns))
    console.print(table)


async def move(target: Target, query: Query, as_json: bool, dest: str) -> int:
    """C-MOVE to ``dest``: the final counts; 0 when the node says it succeeded."""
    qr = _model(query.model)
    proposals = [Proposal(qr.move_uid, ("1.2.840.10008.1.2.1", "1.2.840.10008.1.2"))]
    async with await _open(target, proposals) as assoc:
        result = await assoc.move(_asked(query)[0], dest, qr)
    _retrieve_report("C-MOVE", result, as_json)
    return 0 if result.ok else 1


async def get(
    target: Target,
    query: Query,
    as_json: bool,
    out: Path,
    wanted: tuple[str, ...],
    room: tuple[Floor, int | None] = (DEFAULT_FLOOR, None),
) -> int:
    """C-GET into ``out``: the SOP classes asked of the node first, then every match.

    ``room`` is the free space ``out``'s disk keeps and the most bytes this retrieval may
    bring (None: no bound): past either, the C-GET is cancelled and the command says why.
    """
    identifier, qr = _asked(query)[0], _model(query.model)
    peer = Peer(
        target.host,
        target.port,
        target.tls.settings("client"),
        target.ae_title,
        target.called_ae,
    )
    classes = await peer.classes_in_study(identifier, qr)
    proposals = retrieve_proposals(qr, classes or None, wanted)  # None: the common classes
    from dicomtls.node.storage import DurableStore
    from dicomtls.node.store_scp import DurableStoreHandler

    floor, max_bytes = room
    received = DurableStore(out, flat=True, floor=floor, max_bytes=max_bytes)
    stop_when = None if received.room is None else received.room.why_full
    try:
        async with await _open(target, proposals) as assoc:
            handler = DurableStoreHandler(received)
            result = await assoc.get(identifier, handler, qr, stop_when=stop_when)
    finally:
        received.close()  # the user's folder keeps the objects, nothing of ours
    _retrieve_report("C-GET", result, as_json)
    return 0 if result.ok else 1


def _retrieve_report(service: str, result: Any, as_json: bool) -> None:
    if as_json:
        print(
            json.dumps(
                {
                    "status": result.status,
                    "comment": getattr(result.status, "comment", None),
                    "ok": result.ok,
                    "completed": result.completed,
                    "failed": result.failed,
                    "warning": result.warning,
                    "stored": result.stored,
                    "cancelled": result.cancelled,
                }
            )
        )
        return
    console.print(
        f"{service}: {shown(_answered_text(result.status))}; completed {result.completed}, "
        f"failed {result.failed}, warnings {result.warning}"
    )
    if result.cancelled:
        console.print(
            f"{service} cancelled: {shown(result.cancelled)}; "
            f"the {len(result.stored)} object(s) received are kept"
        )
