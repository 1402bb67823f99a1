"""The ``dicomtls`` command: thin, it parses options, calls the library and renders the result.

Every mistake a person can make ends in one line saying what, where and how to fix
it, and a non-zero exit code; with ``--json`` the same as a JSON object on stdout
(:mod:`dicomtls.cli.errors`). Tracebacks only with ``--debug``, which, like
``--json``, may come before or after the command's name.
"""

from __future__ import annotations

import logging
import sys

import click

from dicomtls import __version__
from dicomtls.cli import certs, client, doctor, serve
from dicomtls.cli.errors import problem_of, report
from dicomtls.cli.logsetup import configure

__all__ = ["cli", "main"]


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="dicomtls")
@click.option("--debug", is_flag=True, help="Show tracebacks and debug logging (also after the command).")
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


client.register(cli)
serve.register(cli)
certs.register(cli)
doctor.register(cli)


def _command(args: list[str]) -> str | None:
    """The subcommand's name, for the hint of a usage error."""
    return next((a for a in args if not a.startswith("-")), None)


def main() -> None:
    """Entry point: errors become one line (or JSON) and an exit code; tracebacks with --debug."""
    args = sys.argv[1:]
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
