"""``dicomtls demo``: the secure link end to end on loopback, success and an explained failure.

It builds a fresh test PKI, starts a mutual-TLS server, connects a good client and
shows what was negotiated, then connects a client whose certificate lacks the TLS
client purpose and shows what the verify callback saw and how to fix it.
"""

from __future__ import annotations

import asyncio
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from rich.console import Console

from dicomtls.cli.render import session_table
from dicomtls.net.link import LinkEvents, SecureLink, connect, serve
from dicomtls.pki import BrokenKind, CertificateAuthority, KeySpec
from dicomtls.tls.certinfo import CertificateInfo
from dicomtls.tls.errors import TLSHandshakeError
from dicomtls.tls.settings import TLSSettings
from dicomtls.tls.verify_error import VerifyError

__all__ = ["run_demo"]


@dataclass
class _Paths:
    ca: Path
    identities: dict[str, tuple[Path, Path]] = field(default_factory=dict)


def _make_pki(directory: Path) -> _Paths:
    root = CertificateAuthority.create("dicomtls Demo Root CA", key=KeySpec.ec())
    paths = _Paths(ca=directory / "ca.pem")
    root.write_cert(paths.ca)
    made = {
        "server": root.issue("DICOMTLS", dns=["localhost"], ips=["127.0.0.1", "::1"]),
        "client": root.issue("DEMO-SCU", dns=["localhost"], ips=["127.0.0.1"]),
        "bad-client": root.issue_broken(BrokenKind("no-purpose"), "Test Client"),
    }
    for name, identity in made.items():
        files = identity.write(directory, name=name)
        paths.identities[name] = (files.chain, files.key)
    return paths


async def _demo(console: Console, directory: Path) -> bool:
    paths = _make_pki(directory)
    callback_lines: list[str] = []

    def on_verify(ok: bool, cert: CertificateInfo, error: VerifyError) -> bool:
        callback_lines.append(f"Received client certificate (depth {cert.depth}):\n{cert}")
        if not error.ok:
            callback_lines.append(f"Error {error.name}: {error.message}\nHint: {error.hint}")
        return ok

    def settings(name: str, **extra: object) -> TLSSettings:
        cert, key = paths.identities[name]
        return TLSSettings(certificate=cert, private_key=key, ca_files=paths.ca, **extra)  # type: ignore[arg-type]

    failures: list[TLSHandshakeError] = []

    def on_ready(peer: str, error: TLSHandshakeError | None) -> None:
        if error is not None:
            failures.append(error)

    async def handler(link: SecureLink) -> None:
        link.write(b"echo: " + await link.read())
        await link.drain()

    server_tls = settings("server", on_verify=on_verify)
    events = LinkEvents(on_secure_link_ready=on_ready)
    expected = True
    async with await serve(handler, "127.0.0.1", 0, server_tls, events=events) as server:
        console.rule("[bold]1. Mutual TLS with a good client certificate")
        async with await connect("127.0.0.1", server.port, settings("client")) as link:
            assert link.session is not None
            link.write(b"hello over TLS")
            answer = await link.read()
            console.print(f"secure link ready with {link.peer}; the server answered {answer!r}")
            console.print(session_table(link.session))
            expected &= answer == b"echo: hello over TLS"
        callback_lines.clear()

        console.rule("[bold]2. A client certificate without the TLS client purpose")
        try:
            async with await connect("127.0.0.1", server.port, settings("bad-client")) as link:
                link.write(b"let me in")
                await link.read()
        except TLSHandshakeError as error:
            console.print(f"[red]client side:[/red] {error}")
        console.print("[bold]The server's verify callback saw:[/bold]")
        console.print("\n".join(callback_lines), markup=False, highlight=False)
        server_failure = failures[0] if failures else None
        if server_failure is not None:
            console.print(f"[red]server log line:[/red] {server_failure}", highlight=False)
        expected &= (
            server_failure is not None
            and server_failure.verify_error is not None
            and server_failure.verify_error.name == "INVALID_PURPOSE"
        )
    return expected


def run_demo(console: Console | None = None) -> int:
    """Run the demo; 0 when everything happened as expected."""
    console = console or Console(emoji=False, highlight=False)
    with tempfile.TemporaryDirectory(prefix="dicomtls-demo-") as tmp:
        ok = asyncio.run(_demo(console, Path(tmp)))
    console.rule()
    console.print(
        "[green]demo: all went as expected[/green]" if ok else "[red]demo: unexpected result[/red]"
    )
    return 0 if ok else 1
