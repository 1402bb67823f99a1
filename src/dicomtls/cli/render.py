"""How the CLI shows certificates and negotiated sessions (rich), shared by every command.

Whatever a peer chose (its certificate's names, the values it answers a query with, the
text of an error that quotes it) goes to the terminal through :func:`shown`: rich would
take ``[red]`` in it for markup, and a terminal would obey its control characters.
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING

from rich.console import Console
from rich.markup import escape

from dicomtls.dimse.status import status_name
from dicomtls.text import printable

if TYPE_CHECKING:  # a command's --help loads none of OpenSSL, X.509 or rich's tables
    from rich.table import Table

    from dicomtls.tls.certinfo import CertificateInfo
    from dicomtls.tls.session import SessionInfo
    from dicomtls.tls.verify_error import VerifyError

__all__ = [
    "make_console",
    "print_session",
    "session_table",
    "shown",
    "status_text",
    "verify_printer",
]


def shown(value: object) -> str:
    """``value`` as rich markup that shows it literally: control, line-breaking and bidi
    characters escaped (:func:`dicomtls.text.printable`), then square brackets."""
    return escape(printable(str(value)))


def status_text(code: int) -> str:
    """A DIMSE status for people: ``0x0000 success``, ``0xA700 out of resources (failure)``
    (the category only where it adds something)."""
    text = status_name(code)
    found = re.fullmatch(r"(.*) \((\w+)\)", text)
    if found and found.group(1).endswith(" " + found.group(2)):
        return found.group(1)
    return text


def make_console(*, stderr: bool = False) -> Console:
    """A console for CLI output: no emoji or guessing highlights, and, when piped, wide
    enough that tables keep whole cipher names and UIDs instead of folding them."""
    stream = sys.stderr if stderr else sys.stdout
    width = None if stream.isatty() else int(os.environ.get("COLUMNS", "200"))
    return Console(emoji=False, highlight=False, stderr=stderr, width=width)


def session_table(session: SessionInfo) -> Table:
    """The seed's cipher introspection, as a table."""
    from rich.table import Table

    table = Table(title="Negotiated secure link", show_header=False)
    peer = session.peer_certificate
    rows = [
        ("Protocol", session.protocol),
        ("Cipher suite", f"{session.cipher_iana or '?'} ({session.cipher_openssl})"),
        ("Key exchange", session.key_exchange),
        ("Authentication", session.authentication),
        ("Encryption", f"{session.encryption}, {session.encryption_bits}-bit key"),
        ("Integrity", session.integrity),
        (
            "Peer (mutual authentication) key",
            f"{session.peer_key_type} {session.peer_key_bits} bits",
        ),
        ("Peer certificate", peer.readable_subject if peer else "-"),
    ]
    for name, value in rows:
        table.add_row(name, shown(value))
    return table


def print_session(console: Console, session: SessionInfo) -> None:
    console.print(session_table(session))


def verify_printer(console: Console) -> Callable[[bool, CertificateInfo, VerifyError], bool]:
    """An on_verify callback that shows each certificate and its code, and keeps the default."""

    def on_verify(ok: bool, cert: CertificateInfo, error: VerifyError) -> bool:
        console.print(
            f"[bold]certificate at depth {cert.depth}[/bold]: {shown(error.name)}",
            highlight=False,
        )
        # Names readable (Zürich, not Z\C3\BCrich); every field comes escaped all the same.
        console.print(cert.text(readable=True), markup=False, highlight=False)
        if not error.ok:
            console.print(
                f"[red]Error {shown(error.name)}[/red]: {shown(error.message)}\n"
                f"Hint: {shown(error.hint)}",
                highlight=False,
            )
        return ok

    return on_verify
