"""``dicomtls doctor``: the diagnosis of a DICOM node, step by step, with the fix for each problem."""

from __future__ import annotations

import asyncio
import dataclasses
import json

import click
from rich.table import Table

from dicomtls.cli.config import ae_option
from dicomtls.cli.logsetup import handshake_failures_said_here
from dicomtls.cli.render import make_console, shown
from dicomtls.cli.tlsopts import DEFAULT_PKI, TLSOptions, tls_options
from dicomtls.doctor import DoctorOptions, Report, Verdict, diagnose
from dicomtls.pki import PKIFiles

__all__ = ["doctor"]

console = make_console()
_COLOURS = {Verdict.PASS: "green", Verdict.WARN: "yellow", Verdict.FAIL: "red", Verdict.SKIP: "dim"}


def render(report: Report) -> Table:
    """The report as a table; what it found quotes the node (its certificate's names, its
    error texts), so every cell is shown literally, never as markup or terminal control."""
    table = Table(title=f"dicomtls doctor {shown(report.target)}")
    for column in ("step", "result", "what we found", "what to change (where)"):
        table.add_column(column, overflow="fold")
    for step in report.steps:
        colour = _COLOURS[step.verdict]
        fix = (
            f"{step.fix} ({step.side})"
            if step.fix and step.verdict in (Verdict.WARN, Verdict.FAIL)
            else ""
        )
        table.add_row(
            shown(step.name),
            f"[{colour}]{step.verdict}[/{colour}]",
            shown(step.summary),
            shown(fix),
        )
    return table


@click.command()
@click.argument("host")
@click.argument("port", type=click.IntRange(1, 65535))
@ae_option("--ae-title", "Our (calling) AE title.", default="DICOMTLS-DOCTOR")
@ae_option("--called-ae", "The node's AE title.", default="DICOMTLS")
@click.option(
    "--timeout", type=float, default=5.0, show_default=True, help="Seconds to wait at each step."
)
@click.option("--json", "as_json", is_flag=True, help="The report as JSON.")
@tls_options
def doctor(
    host: str,
    port: int,
    ae_title: str,
    called_ae: str,
    timeout: float,
    as_json: bool,
    tls: TLSOptions,
) -> None:
    """Probe a DICOM node and explain, step by step, what works and what to fix.

    TCP, TLS or plain, TLS versions and suites against the PS3.15 profiles, the
    certificate chain, our client certificate, then the association and C-ECHO.
    Exit code 0 when every step passes (or does not apply: SKIP), else 1.

    \b
    Example:
      dicomtls doctor pacs.example.org 2762 --ca ca.pem --tls-cert me.pem --tls-key me.key --called-ae PACS
    """
    tls.verify_flags()  # a mistake in --verify is said before it is set aside
    if not tls.ca and not tls.no_tls and not PKIFiles(DEFAULT_PKI).ca.exists():
        # Without a trusted CA the chain is still examined, and reported as untrusted.
        tls = dataclasses.replace(tls, verify="none")
    settings = tls.settings("client")
    options = DoctorOptions(
        host,
        port,
        settings,
        calling_ae=ae_title,
        called_ae=called_ae,
        check_hostname=tls.check_hostname,
        timeout=timeout,
    )
    with handshake_failures_said_here("client"):  # each is in the report, with its fix
        report = asyncio.run(diagnose(options))
    if as_json:
        print(json.dumps(report.to_dict(), default=str))
    else:
        console.print(render(report))
    raise SystemExit(0 if report.ok else 1)
