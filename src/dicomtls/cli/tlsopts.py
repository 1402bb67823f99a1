"""The TLS options every command shares, and turning them into TLSSettings.

TLS is on by default. A client given no certificate options looks for the PKI
that ``dicomtls serve`` creates in ``./dicom-store/pki``, so the command it prints
works as typed; ``--no-tls`` is an explicit opt-out and says so. What is missing is
said in the command's terms (``--ca``, ``--tls-key``) before the library is asked.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click

from dicomtls.cli.config import TLS, ConfigError, options
from dicomtls.cli.errors import UserError
from dicomtls.tls.flags import VerifyFlags, parse_verify_flags

if TYPE_CHECKING:  # the options (and --help) need none of OpenSSL or X.509
    from dicomtls.tls.certinfo import CertificateInfo
    from dicomtls.tls.settings import TLSSettings
    from dicomtls.tls.verify_error import VerifyError

__all__ = ["DEFAULT_PKI", "TLSOptions", "tls_options"]

F = TypeVar("F", bound=Callable[..., Any])
DEFAULT_PKI = Path("dicom-store") / "pki"
_PKCS12 = (".p12", ".pfx")


@dataclass(frozen=True)
class TLSOptions:
    cert: Path | None
    key: Path | None
    ca: tuple[Path, ...]
    crl: tuple[Path, ...]
    verify: str
    profile: str
    no_tls: bool
    key_password: str | None
    check_hostname: bool

    @classmethod
    def of(cls, values: Mapping[str, Any]) -> TLSOptions:
        """From settings by key (:data:`~dicomtls.cli.config.TLS`); absent ones take their default."""
        got: dict[str, Any] = {
            s.key: s.default if values.get(s.key) in (None, ()) else values[s.key] for s in TLS
        }
        return cls(
            cert=got["tls_cert"],
            key=got["tls_key"],
            ca=tuple(got["ca"]),
            crl=tuple(got["crl"]),
            verify=got["verify"],
            profile=got["profile"],
            no_tls=bool(got["no_tls"]),
            key_password=got["key_password"],
            check_hostname=bool(got["check_hostname"]),
        )

    def verify_flags(self) -> VerifyFlags:
        try:
            return parse_verify_flags(self.verify)
        except ValueError as exc:
            raise ConfigError(f"--verify {self.verify}: {exc}") from None

    def settings(
        self,
        role: str,
        *,
        on_verify: Callable[[bool, CertificateInfo, VerifyError], bool] | None = None,
        handshake_timeout: float | None = None,
    ) -> TLSSettings | None:
        """TLSSettings for ``role`` ("server" or "client"), or None with --no-tls.

        ``handshake_timeout`` (seconds) overrides the TLSSettings default when given.
        """
        from dicomtls.tls.settings import TLSSettings  # loads OpenSSL: only when connecting

        if self.no_tls:
            click.echo(
                "warning: TLS is off (--no-tls): the link is neither encrypted nor authenticated",
                err=True,
            )
            return None
        cert, key, ca = self.cert, self.key, self.ca
        if (cert is None and key is None) or not ca:
            cert, key, ca = _from_default_pki(role, cert, key, ca)
        verify = self.verify_flags()
        _check_identity(cert, key)
        if VerifyFlags.PEER in verify and not ca:
            raise _no_ca(role)
        extra: dict[str, Any] = {}
        if handshake_timeout is not None:
            extra["handshake_timeout"] = handshake_timeout
        return TLSSettings(
            certificate=cert,
            private_key=key,
            password=self.key_password,
            ca_files=ca,
            crl_files=self.crl,
            verify=verify,
            profile=self.profile,
            check_hostname=self.check_hostname,
            on_verify=on_verify,
            **extra,
        )


def _from_default_pki(
    role: str, cert: Path | None, key: Path | None, ca: tuple[Path, ...]
) -> tuple[Path | None, Path | None, tuple[Path, ...]]:
    """What the options left out, from the PKI ``dicomtls serve`` made in ./dicom-store/pki."""
    from dicomtls.pki.bundle import PKIFiles  # the PKI tooling: only when something is missing

    pki = PKIFiles(DEFAULT_PKI)
    if cert is None and key is None and pki.exists():
        cert, key = pki.chain(role), pki.key(role)
    if not ca and pki.ca.exists():
        ca = (pki.ca,)
    return cert, key, ca


def _check_identity(cert: Path | None, key: Path | None) -> None:
    """Our certificate and key given together, in the command's terms."""
    if key is not None and cert is None:
        raise UserError(
            "--tls-key needs --tls-cert",
            hint="pass the certificate chain the key belongs to",
            code="TLS_CERT_MISSING",
        )
    if cert is None or key is not None or cert.suffix.lower() in _PKCS12:
        return
    try:
        holds_key = b"PRIVATE KEY-----" in cert.read_bytes()
    except OSError:
        return  # the library says what is wrong with the file
    if not holds_key:
        raise UserError(
            f"--tls-key is missing: {cert} holds no private key",
            hint="pass the private key of that certificate with --tls-key KEY",
            code="TLS_KEY_MISSING",
        )


def _no_ca(role: str) -> UserError:
    where = f"./{DEFAULT_PKI.as_posix()} was not found here"
    if role == "server":
        return UserError(
            f"no CA to trust for client certificates ({where})",
            hint="pass --ca CA.pem (ca in the config file), or --verify none to accept any "
            "client (warned)",
            code="NO_CA",
        )
    return UserError(
        f"no CA to trust: pass --ca CA.pem ({where})",
        hint="run from the folder where `dicomtls serve` made dicom-store/, or pass --ca with "
        "the CA that issued the node's certificate",
        code="NO_CA",
    )


def tls_options(function: F) -> F:
    """Add the shared TLS options; the command receives them as one ``tls`` argument."""
    names = [s.key for s in TLS]

    def collect(**kwargs: Any) -> Any:
        kwargs["tls"] = TLSOptions.of({name: kwargs.pop(name) for name in names})
        return function(**kwargs)

    functools.update_wrapper(collect, function)  # keeps the options already attached
    wrapped: Any = options(TLS)(collect)
    return wrapped  # type: ignore[no-any-return]
