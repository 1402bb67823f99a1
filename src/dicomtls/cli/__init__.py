"""The ``dicomtls`` command: thin, it parses options, calls the library and renders the result."""

from __future__ import annotations

import logging
import sys

import click

from dicomtls import __version__

__all__ = ["main"]


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="dicomtls")
@click.option("--debug", is_flag=True, help="Show tracebacks and debug logging.")
@click.pass_context
def cli(ctx: click.Context, debug: bool) -> None:
    """Secure DICOM networking: TLS with a complete verification model."""
    ctx.obj = {"debug": debug}
    logging.basicConfig(
        level=logging.DEBUG if debug else logging.ERROR,
        format="%(levelname)s %(name)s: %(message)s",
    )


@cli.command()
@click.pass_context
def demo(ctx: click.Context) -> None:
    """Run a secure link end to end on loopback: a good handshake and an explained failure.

    \b
    Example:
      dicomtls demo
    """
    from dicomtls.cli.demo import run_demo

    ctx.exit(run_demo())


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
    except Exception as exc:
        if debug:
            raise
        click.echo(f"dicomtls: error: {exc}", err=True)
        sys.exit(1)
