"""Client commands: ``echo``, ``store``, ``find``, ``move``, ``get``; TLS on by default."""

from __future__ import annotations

import asyncio
import functools
import json
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click
from rich.table import Table

from dicomtls.cli.config import ae_title_option
from dicomtls.cli.errors import UserError, rejection
from dicomtls.cli.logsetup import handshake_failures_said_here
from dicomtls.cli.render import make_console, print_session, shown, status_text, verify_printer
from dicomtls.cli.tlsopts import TLSOptions, tls_options
from dicomtls.dimse.part10 import Part10Error, read_header
from dicomtls.dimse.transfer_syntax import STORAGE_TRANSFER_SYNTAXES
from dicomtls.doctor.report import REJECTION_FIXES
from dicomtls.errors import AssociationError
from dicomtls.net.association import (
    Association,
    associate,
    default_proposals,
    proposals_for,
)
from dicomtls.net.client import Peer
from dicomtls.net.qr_scu import UNIQUE_KEYS, QueryModel, retrieve_proposals
from dicomtls.ul.acse import Proposal

if TYPE_CHECKING:  # pydicom loads only for the commands that build data sets
    from pydicom.dataset import Dataset

__all__ = ["echo", "find", "get", "move", "store"]

console = make_console()


@dataclass(frozen=True)
class _Target:
    """The node a command calls, as its arguments and options name it."""

    host: str
    port: int
    tls: TLSOptions
    ae_title: str
    called_ae: str
    verbose: bool
    """Show each certificate as verified and the negotiated cipher."""

    async def open(self, proposals: list[Proposal], max_operations: int = 1) -> Association:
        """An association proposing ``proposals``; a rejection said in the command's terms."""
        on_verify = verify_printer(console) if self.verbose else None
        settings = self.tls.settings("client", on_verify=on_verify)
        try:
            assoc = await associate(
                self.host,
                self.port,
                settings,
                calling_ae=self.ae_title,
                called_ae=self.called_ae,
                proposals=proposals,
                max_operations=max_operations,
            )
        except AssociationError as exc:
            raise _rejected(exc, f"{self.host}:{self.port}", self.ae_title, self.called_ae) from exc
        if self.verbose and assoc.link.session is not None:
            print_session(console, assoc.link.session)
        return assoc


def _common(function: Callable[..., Any]) -> Callable[..., Any]:
    """The arguments and options every client command takes; the command receives the node
    to call as one ``target`` and ``as_json``."""

    def collect(
        host: str,
        port: int,
        tls: TLSOptions,
        ae_title: str,
        called_ae: str,
        verbose: bool,
        **rest: Any,
    ) -> Any:
        return function(target=_Target(host, port, tls, ae_title, called_ae, verbose), **rest)

    functools.update_wrapper(collect, function)  # keeps the options already attached
    command: Callable[..., Any] = collect
    for option in reversed(
        [
            click.argument("host"),
            click.argument("port", type=click.IntRange(1, 65535)),
            click.option(
                "--ae-title",
                default="DICOMTLS-SCU",
                metavar="AE",
                callback=ae_title_option,
                show_default=True,
                help="Our (calling) AE title.",
            ),
            click.option(
                "--called-ae",
                default="DICOMTLS",
                metavar="AE",
                callback=ae_title_option,
                show_default=True,
                help="The peer's (called) AE title.",
            ),
            click.option(
                "--json", "as_json", is_flag=True, help="Print a machine-readable result."
            ),
            click.option(
                "--verbose",
                "-v",
                is_flag=True,
                help="Show each certificate as verified and the negotiated cipher.",
            ),
        ]
    ):
        command = option(command)
    return tls_options(command)


def _rejected(exc: AssociationError, peer: str, ae_title: str, called_ae: str) -> Exception:
    """A rejection in the command's terms, with the doctor's fix; other failures as they are."""
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


def _run(coroutine: Coroutine[Any, Any, int]) -> None:
    with handshake_failures_said_here("client"):  # the command's error says it
        code = asyncio.run(coroutine)
    raise SystemExit(code)


def _session_json(assoc: Association) -> dict[str, Any] | None:
    """The negotiated link for ``--json``, its ``peer_chain`` as the peer sent it."""
    session = assoc.link.session
    return None if session is None else session.to_dict()


@click.command()
@_common
def echo(target: _Target, as_json: bool) -> None:
    """Verify a DICOM node (C-ECHO) over TLS.

    \b
    Example:
      dicomtls echo pacs.example.org 2762 --ca ca.pem --tls-cert me.pem --tls-key me.key
    """

    async def run() -> int:
        started = time.perf_counter()
        async with await target.open(default_proposals()) as assoc:
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

    _run(run())


#: Skipped files the summary names one by one, at most (``--json`` lists them all).
SKIPPED_NAMED = 10


def _collect(paths: tuple[Path, ...]) -> tuple[list[Path], list[tuple[Path, str]]]:
    """Every DICOM file under ``paths``, and the others with why each is skipped; none at
    all is a mistake said before connecting (an empty summary, exit code 0, looked like
    success)."""
    candidates: list[Path] = []
    for path in paths:
        candidates += sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    good, skipped = [], []
    for path in candidates:
        try:
            read_header(path)
            good.append(path)
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


@click.command()
@_common
@click.argument("paths", nargs=-1, required=True, type=click.Path(exists=True, path_type=Path))
@click.option(
    "--window",
    type=click.IntRange(0, 0xFFFF),
    default=16,
    show_default=True,
    help="C-STOREs outstanding at once if the peer allows it (PS3.7 asynchronous "
    "operations window; 0 = as many as it allows); 1 for a device that "
    "mishandles the negotiation.",
)
def store(target: _Target, as_json: bool, paths: tuple[Path, ...], window: int) -> None:
    """Send DICOM files and folders (recursively) to a node (C-STORE).

    Non-DICOM files are skipped and counted; one bad file never stops the batch.
    The exit code is non-zero when anything failed. A node that allows it receives
    the next object while it still writes the last one to disk.

    \b
    Example:
      dicomtls store localhost 2762 ./studies/ --called-ae DICOMTLS
    """
    files, skipped = _collect(paths)

    async def run() -> int:
        from rich.progress import (
            BarColumn,
            DownloadColumn,
            Progress,
            TextColumn,
            TransferSpeedColumn,
        )

        results: list[tuple[Path, int | str]] = []
        total = sum(f.stat().st_size for f in files)
        started = time.perf_counter()
        async with await target.open(proposals_for(files), window) as assoc:
            with Progress(
                TextColumn("{task.description}"),
                BarColumn(),
                DownloadColumn(),
                TransferSpeedColumn(),
                console=console,
                disable=as_json,
                transient=True,
            ) as progress:
                task = progress.add_task(f"0/{len(files)} objects", total=total)
                try:
                    async for path, outcome in assoc.store_many(files):
                        results.append(
                            (path, outcome if isinstance(outcome, int) else str(outcome))
                        )
                        progress.update(
                            task,
                            advance=path.stat().st_size,
                            description=f"{len(results)}/{len(files)} objects",
                        )
                except Exception as exc:  # the association ended: the rest fail with its reason
                    answered = {p for p, _ in results}
                    results += [(p, str(exc)) for p in files if p not in answered]
        elapsed = time.perf_counter() - started
        failed = [(p, o) for p, o in results if o != 0]
        if as_json:
            print(
                json.dumps(
                    {
                        "stored": len(results) - len(failed),
                        "failed": [{"path": str(p), "status": o} for p, o in failed],
                        "skipped_non_dicom": [str(p) for p, _ in skipped],
                        "bytes": total,
                        "seconds": round(elapsed, 3),
                    }
                )
            )
        else:
            _store_summary(results, skipped, total, elapsed)
        return 1 if failed else 0

    _run(run())


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
            reason = status_text(outcome) if isinstance(outcome, int) else outcome
            console.print(f"[red]failed[/red] {shown(path)}: {shown(reason)}")
    _say_skipped(skipped)
    rate = total / elapsed / 1e6 if elapsed else 0.0
    console.print(f"{total / 1e6:.1f} MB in {elapsed:.2f} s ({rate:.1f} MB/s)")


def _say_skipped(skipped: list[tuple[Path, str]]) -> None:
    """Which files were not sent and why (a count alone sent the user looking)."""
    for _, why in skipped[:SKIPPED_NAMED]:
        console.print(f"[yellow]skipped[/yellow] {shown(why)}")
    if len(skipped) > SKIPPED_NAMED:
        console.print(f"and {len(skipped) - SKIPPED_NAMED} more skipped (--json lists them all)")


def _identifier(keys: tuple[str, ...], level: str) -> Dataset:
    from pydicom.dataset import Dataset

    ds = Dataset()
    ds.QueryRetrieveLevel = level.upper()
    given: dict[str, str] = {}
    for key in keys:
        name, _, value = key.partition("=")
        if (earlier := given.get(name.strip())) is not None:
            raise click.BadParameter(
                f"{name.strip()} given twice ({earlier!r}, then {key!r}): give each key once",
                param_hint="-k",
            )
        given[name.strip()] = key
        try:
            setattr(ds, name.strip(), value)
        except (ValueError, TypeError, AttributeError) as exc:
            raise click.BadParameter(f"{key!r}: {exc}", param_hint="-k") from None
        if name.strip() not in ds.dir():
            raise click.BadParameter(f"{name!r} is not a DICOM keyword", param_hint="-k")
    return ds


@dataclass(frozen=True)
class _Query:
    """What a C-FIND, C-MOVE or C-GET asks for, from ``-k``, ``--level`` and ``--model``."""

    identifier: Dataset
    level: str
    model: QueryModel
    columns: tuple[str, ...]
    """The keys in the order given: a data set holds them in tag order instead."""


def _qr(function: Callable[..., Any]) -> Callable[..., Any]:
    """The query options; the command receives them as one ``query``."""

    def collect(keys: tuple[str, ...], level: str, model: str, **rest: Any) -> Any:
        keys = keys or (UNIQUE_KEYS[level.upper()],)  # else each match is the level's name
        columns = tuple(key.partition("=")[0].strip() for key in keys)
        query = _Query(_identifier(keys, level), level, _model(model, level), columns)
        return function(query=query, **rest)

    functools.update_wrapper(collect, function)  # keeps the options already attached
    command: Callable[..., Any] = collect
    for option in reversed(
        [
            click.option(
                "-k",
                "--key",
                "keys",
                multiple=True,
                help="KEYWORD=VALUE matching key, or KEYWORD to return it (repeatable).",
            ),
            click.option(
                "--level",
                type=click.Choice(["patient", "study", "series", "image"]),
                default="study",
                show_default=True,
            ),
            click.option(
                "--model",
                type=click.Choice(["study", "patient"]),
                default="study",
                show_default=True,
                help="Study Root or Patient Root.",
            ),
        ]
    ):
        command = option(command)
    return command


def _model(name: str, level: str) -> QueryModel:
    """The information model; Study Root has no patient level, which the node would refuse
    with a bare 0xA900."""
    if name == "patient":
        return QueryModel.PATIENT_ROOT
    if level == "patient":
        raise click.BadParameter(
            "--level patient needs --model patient (Study Root has no patient level)",
            param_hint="--level",
        )
    return QueryModel.STUDY_ROOT


@click.command()
@_common
@_qr
def find(target: _Target, query: _Query, as_json: bool) -> None:
    """Query a node (C-FIND).

    \b
    Example:
      dicomtls find localhost 2762 --level study -k PatientName='Doe*' -k StudyDate -k StudyInstanceUID
    """
    identifier, qr = query.identifier, query.model

    async def run() -> int:
        proposals = [Proposal(qr.find_uid, ("1.2.840.10008.1.2.1", "1.2.840.10008.1.2"))]
        async with await target.open(proposals) as assoc:
            matches = [m async for m in assoc.find(identifier, qr)]
        if as_json:
            print(json.dumps([{e.keyword: str(e.value) for e in m} for m in matches]))
            return 0
        table = Table(title=f"{len(matches)} match(es) at {query.level} level")
        columns = [c for c in query.columns if c != "QueryRetrieveLevel"] or ["QueryRetrieveLevel"]
        for column in columns:
            table.add_column(column)
        for match in matches:  # the peer's values: markup and control characters escaped
            table.add_row(*(shown(match.get(c, "")) for c in columns))
        console.print(table)
        return 0

    _run(run())


@click.command()
@_common
@_qr
@click.option(
    "--dest",
    required=True,
    metavar="AE",
    callback=ae_title_option,
    help="AE title the node should send the matches to.",
)
def move(target: _Target, query: _Query, as_json: bool, dest: str) -> None:
    """Ask a node to send matching objects to another AE (C-MOVE).

    \b
    Example:
      dicomtls move localhost 2762 --dest VIEWER --level study -k StudyInstanceUID=1.2.3
    """
    qr = query.model

    async def run() -> int:
        proposals = [Proposal(qr.move_uid, ("1.2.840.10008.1.2.1", "1.2.840.10008.1.2"))]
        async with await target.open(proposals) as assoc:
            result = await assoc.move(query.identifier, dest, qr)
        _retrieve_report("C-MOVE", result, as_json)
        return 0 if result.ok else 1

    _run(run())


def _transfer_syntax(value: str) -> str:
    """A transfer syntax by UID or by pydicom's keyword (JPEG2000Lossless, RLELossless, ...)."""
    import pydicom.uid

    text = value.strip()
    uid = getattr(pydicom.uid, text, None) if not text[:1].isdigit() else pydicom.uid.UID(text)
    if not isinstance(uid, pydicom.uid.UID) or not uid.is_transfer_syntax:
        raise click.BadParameter(
            f"{value!r} is not a transfer syntax: give its UID or a name such as "
            "ExplicitVRLittleEndian, JPEGLosslessSV1, JPEG2000Lossless, RLELossless",
            param_hint="--ts",
        )
    return str(uid)


@click.command()
@_common
@_qr
@click.option(
    "--out",
    required=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="Directory for the objects.",
)
@click.option(
    "--ts",
    "syntaxes",
    multiple=True,
    metavar="SYNTAX",
    help="Receive objects only in these transfer syntaxes (UID or name, repeatable) "
    "[default: every syntax a storage node takes].",
)
def get(
    target: _Target, query: _Query, as_json: bool, out: Path, syntaxes: tuple[str, ...]
) -> None:
    """Retrieve matching objects onto this association (C-GET) into a directory.

    The SOP classes to receive are asked of the node first (a study-level C-FIND for
    SOPClassesInStudy); each is proposed in every transfer syntax, so objects arrive as
    the node stores them, compressed or not.

    \b
    Example:
      dicomtls get localhost 2762 --out ./retrieved --level study -k StudyInstanceUID=1.2.3
      dicomtls get localhost 2762 --out ./retrieved --level study -k StudyInstanceUID=1.2.3 \\
          --ts ExplicitVRLittleEndian --ts JPEG2000Lossless
    """
    identifier, qr = query.identifier, query.model
    wanted = tuple(_transfer_syntax(s) for s in syntaxes) or STORAGE_TRANSFER_SYNTAXES

    async def run() -> int:
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

        received = DurableStore(out, flat=True)
        try:
            async with await target.open(proposals) as assoc:
                result = await assoc.get(identifier, DurableStoreHandler(received), qr)
        finally:
            received.close()  # the user's folder keeps the objects, nothing of ours
        _retrieve_report("C-GET", result, as_json)
        return 0 if result.ok else 1

    _run(run())


def _retrieve_report(service: str, result: Any, as_json: bool) -> None:
    if as_json:
        print(
            json.dumps(
                {
                    "status": result.status,
                    "ok": result.ok,
                    "completed": result.completed,
                    "failed": result.failed,
                    "warning": result.warning,
                    "stored": result.stored,
                }
            )
        )
        return
    console.print(
        f"{service}: {status_text(result.status)}; completed {result.completed}, "
        f"failed {result.failed}, warnings {result.warning}"
    )
