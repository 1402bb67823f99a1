"""The ``dicomtls`` command: thin, it parses options, calls the library and renders the result.

Every mistake a person can make ends in one line saying what and where, and a
non-zero exit code; tracebacks only with ``--debug``.
"""

from __future__ import annotations

import logging
import sys

import click

from dicomtls import __version__
from dicomtls.cli import certs, client, doctor, serve
from dicomtls.errors import DicomTLSError
from dicomtls.logs import PRINTABLE
from dicomtls.text import printable

__all__ = ["cli", "main"]


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="dicomtls")
@click.option("--debug", is_flag=True, help="Show tracebacks and debug logging.")
def cli(debug: bool) -> None:
    """Secure DICOM networking: TLS with a complete verification model.

    \b
    First secure node in a minute:
      dicomtls serve                      # creates a test PKI, prints the client command
      dicomtls echo localhost 2762 ...    # as printed
      dicomtls store localhost 2762 ./folder --called-ae DICOMTLS
    """
    handler = logging.StreamHandler()
    handler.addFilter(PRINTABLE)  # every logger's lines, asyncio's too, escaped like ours
    logging.basicConfig(
        level=logging.DEBUG if debug else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        handlers=[handler],
    )


@cli.command()
def demo() -> None:
    """Run the main job end to end on loopback: a good link and an explained failure.

    \b
    Example:
      dicomtls demo
    """
    from dicomtls.cli.demo import run_demo

    raise SystemExit(run_demo())


client.register(cli)
serve.register(cli)
certs.register(cli)
doctor.register(cli)

_EXPECTED = (DicomTLSError, OSError, ValueError)


def main() -> None:
    """Entry point: errors become one line and a non-zero exit, tracebacks only with --debug."""
    debug = "--debug" in sys.argv
    try:
        cli.main(standalone_mode=False)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except click.Abort:
        click.echo("aborted", err=True)
        sys.exit(130)
    except _EXPECTED as exc:
        if debug:
            raise
        click.echo(f"dicomtls: error: {printable(str(exc))}", err=True)  # may quote a peer
        sys.exit(1)
    except Exception as exc:  # a bug of ours: still one line, with the way to see more
        if debug:
            raise
        click.echo(
            f"dicomtls: internal error: {exc!r} (run with --debug for the traceback)", err=True
        )
        sys.exit(70)
