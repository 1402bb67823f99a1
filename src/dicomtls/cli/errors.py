"""Every error the command reports: one line with the fix, or with ``--json`` one JSON object.

:func:`problem_of` is the one place an exception becomes what the user sees: the
message, a stable ``code`` (the doctor's codes where they overlap, e.g.
``CALLED_AE_NOT_RECOGNIZED``, ``INVALID_PURPOSE``), the ``hint`` that says what to
change, and the exit code: 2 for a mistake in how the command was called (options,
configuration), 1 for everything that went wrong doing it, 70 for a bug of ours.
The exception classes are imported only when an error is reported: starting the
command costs nothing for them.
"""

from __future__ import annotations

import errno
import json
import re
from dataclasses import dataclass

import click

from dicomtls.text import printable

__all__ = ["Problem", "UserError", "problem_of", "report"]

#: How a library message hands over its advice (TLSHandshakeError, ConnectError).
_HINT = ". Hint: "


class UserError(click.ClickException):
    """A mistake the user can fix, said in the command's own terms."""

    exit_code = 1

    def __init__(self, message: str, *, hint: str | None = None, code: str = "FAILED") -> None:
        super().__init__(message)
        self.hint = hint
        self.code = code


@dataclass(frozen=True)
class Problem:
    """An error as the user sees it."""

    error: str
    code: str
    hint: str | None = None
    exit_code: int = 1

    def line(self) -> str:
        """One line for stderr; what came from a peer is escaped (:func:`printable`)."""
        said = self.error if self.error.endswith(("?", "!")) else self.error.rstrip(".") + "."
        text = f"{said} Hint: {self.hint}" if self.hint else self.error
        return f"dicomtls: error: {printable(text)}"

    def to_json(self) -> str:
        return json.dumps({"error": self.error, "code": self.code, "hint": self.hint})


def report(problem: Problem, *, as_json: bool) -> None:
    """Say it: a JSON object on stdout with ``--json``, else one line on stderr."""
    if as_json:
        click.echo(problem.to_json())
    else:
        click.echo(problem.line(), err=True)


def _split(text: str) -> tuple[str, str | None]:
    message, found, hint = text.partition(_HINT)
    return (message, hint or None) if found else (text, None)


def problem_of(exc: BaseException, command: str | None = None) -> Problem:
    """What to tell the user about ``exc`` (the one table of codes)."""
    from dicomtls.errors import DicomTLSError

    if isinstance(exc, click.ClickException):
        return _click_problem(exc, command)
    message, hint = _split(str(exc))
    if isinstance(exc, DicomTLSError):
        return _library_problem(exc, message, hint)
    if isinstance(exc, OSError):
        return _os_problem(exc)
    if isinstance(exc, ValueError):
        return Problem(message, "INVALID_VALUE", hint)
    return Problem(f"internal error: {exc!r}", "INTERNAL", "run with --debug for the traceback", 70)


def _click_problem(exc: click.ClickException, command: str | None) -> Problem:
    """Ours (:class:`UserError`) as raised; click's own as a mistake in how it was called."""
    if isinstance(exc, UserError):
        return Problem(exc.message, exc.code, exc.hint, exc.exit_code)
    if isinstance(exc, click.UsageError):
        where = f"dicomtls {command} --help" if command else "dicomtls --help"
        return Problem(exc.format_message(), "USAGE", f"see {where}", exc.exit_code)
    return Problem(exc.format_message(), "USAGE", None, exc.exit_code)


def _library_problem(exc: BaseException, message: str, hint: str | None) -> Problem:
    """A library error, its advice said in the command's options where they differ."""
    from dicomtls.errors import AssociationError, ConnectError
    from dicomtls.tls.errors import SettingsError, TLSHandshakeError

    if isinstance(exc, TLSHandshakeError):
        code = handshake_code(exc)
        return Problem(message, code, _HANDSHAKE_HINTS.get(code, exc.hint))
    if isinstance(exc, ConnectError):
        return Problem(message, "CONNECT_FAILED", hint)
    if isinstance(exc, AssociationError):
        if " did not accept " in message:  # a presentation context declined
            return Problem(message, "NOT_ACCEPTED", hint or _NOT_ACCEPTED)
        if message.startswith("C-FIND failed") and "0xA900" in message:
            return Problem(message, "QUERY_REFUSED", _QUERY_REFUSED)
        return Problem(message, rejection(message) or "ASSOCIATION_FAILED", hint)
    if isinstance(exc, SettingsError):
        return _settings_problem(message)
    return Problem(message, _library_code(exc), hint)


_NOT_ACCEPTED = (
    "a dicomtls node grants services by calling AE title: see its [access] rules "
    "(default_services), or call with a title granted them (--ae-title)"
)

_QUERY_REFUSED = (
    "below the top level, a query names one entity of each level above it: -k "
    "StudyInstanceUID=UID at series level, -k SeriesInstanceUID=UID as well at image level, "
    "and -k PatientID=ID below the patient level of --model patient (the node's log says "
    "what it missed)"
)

#: A TLS setting's mistake (the library names its setting) -> what the command line gives.
_SETTINGS_FIXES = (
    (
        "is encrypted",
        "KEY_PASSWORD",
        "pass its password with --key-password (or DICOMTLS_KEY_PASSWORD)",
    ),
    ("wrong password", "KEY_PASSWORD", "pass the key's own password with --key-password"),
    ("does not match the certificate", "KEY_MISMATCH", "pass the key of --tls-cert with --tls-key"),
    (
        "file not found",
        "FILE_NOT_FOUND",
        "check the path given to --tls-cert, --tls-key, --ca or --crl",
    ),
)


#: The file a library message names (in its words) -> the option that gave it, and what it takes.
_FILE_OPTIONS = (
    (
        "certificate file",
        "--tls-cert takes our certificate chain (PEM, leaf first), DER or PKCS#12",
    ),
    ("PKCS#12 file", "--tls-cert takes our certificate chain (PEM, leaf first), DER or PKCS#12"),
    ("readable private key", "--tls-key takes the private key of --tls-cert (PEM or DER)"),
    ("CA file", "--ca takes the certificates of the CAs we trust (PEM or DER)"),
    ("CA directory", "--ca takes the certificates of the CAs we trust (PEM or DER)"),
    ("CRL file", "--crl takes certificate revocation lists (PEM or DER)"),
)


def _settings_problem(message: str) -> Problem:
    for phrase, code, hint in _SETTINGS_FIXES:
        if phrase in message:
            if phrase == "is encrypted":  # the library's own way out is not the command's
                message = message.partition(": give a password")[0]
            return Problem(message, code, hint)
    for phrase, takes in _FILE_OPTIONS:
        if phrase in message:
            return Problem(message, "TLS_FILE", takes)
    return Problem(message, "TLS_SETTINGS", "check --tls-cert, --tls-key, --ca and --crl")


def handshake_code(exc: object) -> str:
    """The verify code when a certificate was at fault, else the TLS alert, else the stage."""
    from dicomtls.tls.errors import TLSHandshakeError

    assert isinstance(exc, TLSHandshakeError)
    if exc.verify_error is not None:
        return exc.verify_error.name
    if exc.alert is not None:
        return exc.alert.upper()
    return "TLS_" + str(exc.stage).upper().replace("-", "_")


#: What to do, in the command's options, where the library's hint speaks of settings.
_HANDSHAKE_HINTS = {
    "CERTIFICATE_REQUIRED": "pass our certificate and key with --tls-cert and --tls-key: "
    "the node requires one",
    "UNKNOWN_CA": "use a certificate issued by a CA the node trusts (its --ca), or have the "
    "node trust our CA",
    "UNABLE_TO_GET_ISSUER_CERT_LOCALLY": "pass the CA that issued the node's certificate with --ca",
    "SELF_SIGNED_CERT_IN_CHAIN": "pass the CA that issued the node's certificate with --ca",
    "DEPTH_ZERO_SELF_SIGNED_CERT": "pass the node's own certificate with --ca to trust it as it is",
    "HOSTNAME_MISMATCH": "connect by a name the node's certificate holds (dicomtls inspect shows "
    "them), or leave out --check-hostname",
    "IP_ADDRESS_MISMATCH": "connect by an address the node's certificate holds (dicomtls inspect "
    "shows them), or leave out --check-hostname",
    "CERT_HAS_EXPIRED": "the node's certificate (or a CA of its chain) has expired: renew it on "
    "the node (dicomtls inspect shows the dates), and check both machines' clocks",
    "CERT_NOT_YET_VALID": "the node's certificate (or a CA of its chain) is not valid yet: "
    "check both machines' clocks (dicomtls inspect shows the dates)",
    "TLS_CLOSED": "dicomtls doctor with the same host and port tells whether the port speaks "
    "plain DICOM (then --no-tls, if you must) or the peer dropped us (its log says why)",
}

_REJECTED = re.compile(r"rejected the association \(\w+, \w+, (\w+)\)")


def rejection(message: str) -> str | None:
    """The reason name of an A-ASSOCIATE-RJ the message reports (e.g. CALLED_AE_NOT_RECOGNIZED).

    Read from the text: :class:`~dicomtls.errors.AssociationError` carries no fields yet.
    """
    found = _REJECTED.search(message)
    return found.group(1) if found else None


def _library_code(exc: BaseException) -> str:
    from dicomtls.dimse.part10 import Part10Error
    from dicomtls.net.hooks import StatusError
    from dicomtls.node.policy import PolicyError
    from dicomtls.node.storage import StorageError
    from dicomtls.ul.errors import ProtocolError

    for kind, code in (
        (Part10Error, "NOT_DICOM"),
        (StorageError, "STORAGE_FAILED"),
        (PolicyError, "ACCESS_RULES"),
        (StatusError, "DIMSE_STATUS"),
        (ProtocolError, "PROTOCOL_ERROR"),
    ):
        if isinstance(exc, kind):
            return code
    return "FAILED"


_OS_CODES = {
    errno.ENOENT: ("FILE_NOT_FOUND", None),
    errno.EACCES: ("PERMISSION_DENIED", "check the file's or folder's owner and mode"),
    errno.EPERM: ("PERMISSION_DENIED", "check the file's or folder's owner and mode"),
    errno.ENOSPC: ("DISK_FULL", "free space on the disk"),
    errno.EADDRINUSE: ("PORT_IN_USE", "stop what listens there, or choose another --port"),
}


def _os_problem(exc: OSError) -> Problem:
    code, hint = _OS_CODES.get(exc.errno or 0, ("OS_ERROR", None))
    if exc.strerror and exc.filename is not None:
        message = f"{exc.filename}: {exc.strerror}"
    else:
        message = str(exc)
    return Problem(message, code, hint)
