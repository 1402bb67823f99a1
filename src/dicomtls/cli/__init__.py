"""The ``dicomtls`` command: thin, it parses options, calls the library and renders the result.

Every mistake a person can make ends in one line saying what, where and how to fix
it, and a non-zero exit code; with ``--json`` the same as a JSON object on stdout
(:mod:`dicomtls.cli.errors`). Tracebacks only with ``--debug``, which, like
``--json``, may come before or after the command's name.
"""

from __future__ import annotations

import gc
import importlib
import logging
import sys

import click

from dicomtls import __version__
from dicomtls.cli.errors import problem_of, report
from dicomtls.cli.logsetup import configure

__all__ = ["cli", "main"]

#: Each command's module, and its line in ``dicomtls --help``. A command's module (and
#: what it imports: pydicom, rich, OpenSSL...) loads only when that command runs, so
#: ``dicomtls --version`` and ``dicomtls echo --help`` start in a fraction of the time.
#: tests/cli/test_startup.py holds these lines to each command's own help.
COMMANDS: dict[str, tuple[str, str]] = {
    "ciphers": (
        "dicomtls.cli.certs",
        "The TLS versions and cipher suites each DICOM security profile allows.",
    ),
    "doctor": (
        "dicomtls.cli.doctor",
        "Probe a DICOM node and explain, step by step, what works and what to fix.",
    ),
    "echo": ("dicomtls.cli.client", "Verify a DICOM node (C-ECHO) over TLS."),
    "find": ("dicomtls.cli.client", "Query a node (C-FIND)."),
    "get": (
        "dicomtls.cli.client",
        "Retrieve matching objects onto this association (C-GET) into a directory.",
    ),
    "index": (
        "dicomtls.cli.serve",
        "Rebuild a node's index from its files (the files are the truth).",
    ),
    "janitor": (
        "dicomtls.cli.serve",
        "Remove objects in S3 that no index row names: a scale-out node's leftovers.",
    ),
    "inspect": (
        "dicomtls.cli.certs",
        "Explain a certificate or chain file: each certificate as the verify callback shows it.",
    ),
    "move": ("dicomtls.cli.client", "Ask a node to send matching objects to another AE (C-MOVE)."),
    "pki": (
        "dicomtls.cli.certs",
        "A small test PKI: a CA, and node certificates with the right purposes.",
    ),
    "serve": (
        "dicomtls.cli.serve",
        "Run a secure DICOM node: C-ECHO, C-STORE, C-FIND/C-MOVE/C-GET over what it stores.",
    ),
    "store": (
        "dicomtls.cli.client",
        "Send DICOM files and folders (recursively) to a node (C-STORE).",
    ),
}


class _Commands(click.Group):
    """A group whose commands load on first use (see :data:`COMMANDS`)."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *COMMANDS})

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name in COMMANDS:
            command = getattr(importlib.import_module(COMMANDS[name][0]), name)
            assert isinstance(command, click.Command)
            return command
        return super().get_command(ctx, name)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        """As click lists commands, from the lines above instead of each command's module."""
        names = self.list_commands(ctx)
        limit = formatter.width - 6 - max(len(name) for name in names)
        rows = []
        for name in names:
            own = self.commands.get(name)
            line = own.get_short_help_str(limit) if own else _shortened(COMMANDS[name][1], limit)
            rows.append((name, line))
        with formatter.section("Commands"):
            formatter.write_dl(rows)


def _shortened(line: str, limit: int) -> str:
    """A help line cut at a word within ``limit`` characters, as click cuts its own."""
    if len(line) <= limit:
        return line
    return line[: limit - 3].rsplit(" ", 1)[0] + "..."


@click.group(
    cls=_Commands,
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
)
@click.version_option(__version__, prog_name="dicomtls")
@click.option(
    "--debug", is_flag=True, help="Show tracebacks and debug logging (also after the command)."
)
def cli(debug: bool) -> None:
    """Secure DICOM networking: TLS with a complete verification model.

    \b
    First secure node in a minute:
      dicomtls serve                      # creates a test PKI, prints the client command
      dicomtls echo localhost 2762 ...    # as printed
      dicomtls store localhost 2762 ./folder --called-ae DICOMTLS
    """
    configure(logging.DEBUG if debug else logging.WARNING)


@cli.command()
@click.option("--json", "as_json", is_flag=True, help='Only the outcome, as JSON: {"ok": true}.')
def demo(as_json: bool) -> None:
    """Run the main job end to end on loopback: a good link and an explained failure.

    \b
    Example:
      dicomtls demo
    """
    from dicomtls.cli.demo import run_demo

    raise SystemExit(run_demo(as_json=as_json))


def _command(args: list[str]) -> str | None:
    """The subcommand's name, for the hint of a usage error (None for an unknown one)."""
    name = next((a for a in args if not a.startswith("-")), None)
    return name if name in COMMANDS or name in cli.commands else None


def main() -> None:
    """Entry point: errors become one line (or JSON) and an exit code; tracebacks with --debug."""
    try:
        _main(sys.argv[1:])
    finally:
        # What the command loaded and made lives until exit: the interpreter's last
        # collections need not walk it (a quarter of a short command's CPU time).
        gc.freeze()


def _main(args: list[str]) -> None:
    words = args[: args.index("--")] if "--" in args else args
    debug, as_json = "--debug" in words, "--json" in words
    if debug:  # a group option, accepted after the command's name too
        args = ["--debug", *(a for a in words if a != "--debug"), *args[len(words) :]]
    try:
        cli.main(args, prog_name="dicomtls", standalone_mode=False)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except click.Abort:
        click.echo("aborted", err=True)
        sys.exit(130)
    except Exception as exc:
        if debug and not isinstance(exc, click.ClickException):
            raise
        problem = problem_of(exc, _command(words))
        report(problem, as_json=as_json)
        sys.exit(problem.exit_code)
