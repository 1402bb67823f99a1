"""The TLS options every command shares, and turning them into TLSSettings.

TLS is on by default. A client given no certificate options looks for the PKI
that ``dicomtls serve`` creates in ``./dicom-store/pki``, so the command it prints
works as typed; ``--no-tls`` is an explicit opt-out and says so.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import click

from dicomtls.pki import PKIFiles
from dicomtls.tls.certinfo import CertificateInfo
from dicomtls.tls.flags import parse_verify_flags
from dicomtls.tls.profiles import PROFILES
from dicomtls.tls.settings import TLSSettings
from dicomtls.tls.verify_error import VerifyError

__all__ = ["TLSOptions", "tls_options"]

F = TypeVar("F", bound=Callable[..., Any])
DEFAULT_PKI = Path("dicom-store") / "pki"


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
        if self.no_tls:
            click.echo(
                "warning: TLS is off (--no-tls): the link is neither encrypted nor authenticated",
                err=True,
            )
            return None
        cert, key, ca = self.cert, self.key, self.ca
        pki = PKIFiles(DEFAULT_PKI)
        if cert is None and key is None and pki.exists():
            cert, key = pki.chain(role), pki.key(role)
        if not ca and pki.ca.exists():
            ca = (pki.ca,)
        try:
            verify = parse_verify_flags(self.verify)
        except ValueError as exc:
            raise click.BadParameter(str(exc), param_hint="--verify") from None
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


_EXISTING = click.Path(exists=True, dir_okay=False, path_type=Path)


def tls_options(function: F) -> F:
    """Add the shared TLS options; the command receives them as one ``tls`` argument."""
    options = [
        click.option("--tls-cert", "cert", type=_EXISTING, help="Our certificate chain (PEM: leaf first), DER or PKCS#12."),
        click.option("--tls-key", "key", type=_EXISTING, help="Our private key (PEM or DER), if not inside --tls-cert."),
        click.option("--key-password", envvar="DICOMTLS_KEY_PASSWORD", help="Password of an encrypted key (or env DICOMTLS_KEY_PASSWORD)."),
        click.option("--ca", "ca", type=_EXISTING, multiple=True, help="Trusted CA certificates (repeatable)."),
        click.option("--crl", "crl", type=_EXISTING, multiple=True, help="Certificate revocation lists (repeatable)."),
        click.option("--verify", default="peer,fail-if-no-peer-cert", show_default=True,
                     help="Comma list of peer, fail-if-no-peer-cert, client-once, or none."),
        click.option("--profile", type=click.Choice(list(PROFILES)), default="bcp195-rfc8996", show_default=True,
                     help="DICOM PS3.15 TLS profile."),
        click.option("--check-hostname", is_flag=True, help="Client: require the server certificate to name the host."),
        click.option("--no-tls", is_flag=True, help="Plain TCP: an explicit, warned opt-out."),
    ]  # fmt: skip

    def collect(**kwargs: Any) -> Any:
        names = (
            "cert",
            "key",
            "key_password",
            "ca",
            "crl",
            "verify",
            "profile",
            "check_hostname",
            "no_tls",
        )
        values = {name: kwargs.pop(name) for name in names}
        kwargs["tls"] = TLSOptions(**values)
        return function(**kwargs)

    functools.update_wrapper(collect, function)  # keeps the options already attached
    wrapped: Any = collect
    for option in reversed(options):
        wrapped = option(wrapped)
    return wrapped  # type: ignore[no-any-return]
