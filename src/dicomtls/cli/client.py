"""Client commands: ``echo``, ``store``, ``find``, ``move``, ``get``; TLS on by default."""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from dicomtls.cli.config import ae_option
from dicomtls.cli.tlsopts import TLSOptions, tls_options
from dicomtls.dimse.transfer_syntax import STORAGE_TRANSFER_SYNTAXES

if TYPE_CHECKING:  # pydicom loads only for the commands that build data sets
    from collections.abc import Callable

    from pydicom.dataset import Dataset

    from dicomtls.node.room import Floor

__all__ = ["echo", "find", "get", "move", "store"]

# Each command parses its arguments here and runs in dicomtls.cli.client_jobs, imported
# only then: --help, and a mistake in the arguments, load no TLS or network stack.


@dataclass(frozen=True)
class Target:
    """The node a command calls, as its arguments and options name it."""

    host: str
    port: int
    tls: TLSOptions
    ae_title: str
    called_ae: str
    verbose: bool
    """Show each certificate as verified and the negotiated cipher."""


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
        return function(target=Target(host, port, tls, ae_title, called_ae, verbose), **rest)

    functools.update_wrapper(collect, function)  # keeps the options already attached
    command: Callable[..., Any] = collect
    for option in reversed(
        [
            click.argument("host"),
            click.argument("port", type=click.IntRange(1, 65535)),
            ae_option("--ae-title", "Our (calling) AE title.", default="DICOMTLS-SCU"),
            ae_option("--called-ae", "The peer's (called) AE title.", default="DICOMTLS"),
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


@click.command()
@_common
def echo(target: Target, as_json: bool) -> None:
    """Verify a DICOM node (C-ECHO) over TLS.

    \b
    Example:
      dicomtls echo pacs.example.org 2762 --ca ca.pem --tls-cert me.pem --tls-key me.key
    """
    from dicomtls.cli import client_jobs as jobs

    jobs.run(jobs.echo(target, as_json))


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
def store(target: Target, as_json: bool, paths: tuple[Path, ...], window: int) -> None:
    """Send DICOM files and folders (recursively) to a node (C-STORE).

    Non-DICOM files are skipped and counted; one bad file never stops the batch.
    The exit code is non-zero when anything failed. A node that allows it receives
    the next object while it still writes the last one to disk.

    \b
    Example:
      dicomtls store localhost 2762 ./studies/ --called-ae DICOMTLS
    """
    from dicomtls.cli import client_jobs as jobs

    jobs.run(jobs.store(target, as_json, paths, window))


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
class Query:
    """What a C-FIND, C-MOVE or C-GET asks for, from ``-k``, ``--level`` and ``--model``."""

    identifier: Dataset
    level: str
    model: str
    """``study`` (Study Root) or ``patient`` (Patient Root)."""
    columns: tuple[str, ...]
    """The keys in the order given (a data set holds them in tag order); none given: the
    command asks for the level's unique key."""


def _qr(function: Callable[..., Any]) -> Callable[..., Any]:
    """The query options; the command receives them as one ``query``."""

    def collect(keys: tuple[str, ...], level: str, model: str, **rest: Any) -> Any:
        _check_model(model, level)
        columns = tuple(key.partition("=")[0].strip() for key in keys)
        query = Query(_identifier(keys, level), level, model, columns)
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


def _check_model(model: str, level: str) -> None:
    """Study Root has no patient level, which the node would refuse with a bare 0xA900."""
    if level == "patient" and model != "patient":
        raise click.BadParameter(
            "--level patient needs --model patient (Study Root has no patient level)",
            param_hint="--level",
        )


@click.command()
@_common
@_qr
def find(target: Target, query: Query, as_json: bool) -> None:
    """Query a node (C-FIND).

    \b
    Example:
      dicomtls find localhost 2762 --level study -k PatientName='Doe*' -k StudyDate -k StudyInstanceUID
    """
    from dicomtls.cli import client_jobs as jobs

    jobs.run(jobs.find(target, query, as_json))


@click.command()
@_common
@_qr
@ae_option("--dest", "AE title the node should send the matches to.", required=True)
def move(target: Target, query: Query, as_json: bool, dest: str) -> None:
    """Ask a node to send matching objects to another AE (C-MOVE).

    \b
    Example:
      dicomtls move localhost 2762 --dest VIEWER --level study -k StudyInstanceUID=1.2.3
    """
    from dicomtls.cli import client_jobs as jobs

    jobs.run(jobs.move(target, query, as_json, dest))


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
@click.option(
    "--max-bytes",
    callback=lambda ctx, param, value: _size(value, param),
    metavar="SIZE",
    help="Cancel the retrieval once it has brought this much (e.g. 20GB, 500MiB) "
    "[default: no bound].",
)
@click.option(
    "--min-free-space",
    "floor",
    callback=lambda ctx, param, value: _floor(value, param),
    metavar="SIZE",
    help="Cancel the retrieval before --out's disk has less free (a size, 0: none, or a "
    'share such as "5%") [default: 1GiB or 5% of the disk, whichever is smaller].',
)
def get(
    target: Target,
    query: Query,
    as_json: bool,
    out: Path,
    syntaxes: tuple[str, ...],
    max_bytes: int | None,
    floor: Floor,
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
    wanted = tuple(_transfer_syntax(s) for s in syntaxes) or STORAGE_TRANSFER_SYNTAXES
    from dicomtls.cli import client_jobs as jobs

    jobs.run(jobs.get(target, query, as_json, out, wanted, (floor, max_bytes)))


def _size(value: str | None, param: click.Parameter) -> int | None:
    from dicomtls.node.room import parse_size

    try:
        return None if value is None else parse_size(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param=param) from None


def _floor(value: str | None, param: click.Parameter) -> Floor:
    from dicomtls.node.room import DEFAULT_FLOOR, parse_floor

    try:
        return DEFAULT_FLOOR if value is None else parse_floor(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param=param) from None
