"""TLS settings of a DICOM network connection: immutable, validated once, secure by default.

Every file is read and every rule checked when a :class:`TLSSettings` is
constructed, so a wrong password, a key that does not match its certificate or
an illegal verification-flag combination is a :class:`SettingsError` right
there, not a mystery at handshake time. Defaults follow DICOM PS3.15 B.12
(BCP 195, RFC 8996): mutual TLS, verification on, TLS 1.2 and 1.3 only.
"""

from __future__ import annotations

import functools
import warnings
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from dicomtls.logs import get_logger
from dicomtls.tls.certinfo import CertificateInfo
from dicomtls.tls.ciphers import CipherSuite, lookup_cipher
from dicomtls.tls.errors import SettingsError
from dicomtls.tls.flags import Side, VerifyFlags, validate_verify_flags
from dicomtls.tls.identity import Identity, PasswordCallback, load_identity
from dicomtls.tls.profiles import DEFAULT_PROFILE, SecurityProfile, get_profile
from dicomtls.tls.trust import CRLScope, TrustStore, load_trust
from dicomtls.tls.verify_error import VerifyError

__all__ = ["DEFAULT_VERIFY", "TLSSettings", "VerifyCallback"]

log = get_logger("dicomtls.tls")


@functools.cache
def _retired(name: str, annex: str) -> str:
    """The warning for a retired profile, logged once: a node builds settings for its own
    side and for its C-MOVE connections, and again at each certificate reload."""
    message = (
        f"TLS profile {name!r} ({annex}) is retired by DICOM PS3.15; "
        "use it only for old devices that support nothing newer"
    )
    log.warning(message)
    return message


VerifyCallback = Callable[[bool, CertificateInfo, VerifyError], bool]
"""The seed's OnVerify: ``(ok, certificate, error) -> continue?``; return ``ok`` for the default."""

DEFAULT_VERIFY = VerifyFlags.PEER | VerifyFlags.FAIL_IF_NO_PEER_CERT

PathLike = str | Path


def as_paths(value: PathLike | Iterable[PathLike] | None) -> tuple[Path, ...]:
    """A settings field that takes one path or several, as a tuple of paths."""
    if value is None:
        return ()
    if isinstance(value, str | Path):
        return (Path(value),)
    return tuple(Path(v) for v in value)


@dataclass(frozen=True, kw_only=True)
class TLSSettings:
    """How one side of a DICOM connection does TLS.

    The same object serves a client and a server; :meth:`context` builds (once
    per side) the OpenSSL context that every connection of that side shares.
    """

    certificate: PathLike | None = None
    """Our certificate chain: PEM (leaf first, may include the key), DER, or PKCS#12."""
    private_key: PathLike | None = None
    """The private key (PEM or DER) when it is not inside ``certificate``."""
    password: str | bytes | None = field(default=None, repr=False)
    on_private_key_password: PasswordCallback | None = None
    """Asked for the key password (given the key path) when ``password`` is not set."""
    ca_files: PathLike | Iterable[PathLike] | None = None
    """PEM bundles or DER files of CA certificates we trust for the peer."""
    ca_directory: PathLike | None = None
    crl_files: PathLike | Iterable[PathLike] | None = None
    crl_scope: CRLScope | Literal["leaf", "chain"] = CRLScope.LEAF
    """Which certificates the CRLs must cover: the peer's own, or every one in its chain."""
    verify: VerifyFlags = DEFAULT_VERIFY
    verify_depth: int = 9
    """Maximum number of intermediate CA certificates between the peer and a trusted CA."""
    on_verify: VerifyCallback | None = None
    profile: str = DEFAULT_PROFILE
    """A DICOM PS3.15 security profile name; see :mod:`dicomtls.tls.profiles`."""
    ciphers: Iterable[str] | None = None
    """Explicit cipher suites (IANA or OpenSSL names), overriding the profile's list."""
    check_hostname: bool = False
    """Client side: also require the server certificate to match ``server_hostname``."""
    server_hostname: str | None = None
    """Client side: the name for SNI and the hostname check (defaults to the host dialled)."""
    handshake_timeout: float = 30.0

    # Derived once in __post_init__; never given by the caller.
    identity: Identity | None = field(init=False, default=None, repr=False, compare=False)
    trust: TrustStore = field(init=False, repr=False, compare=False)
    security_profile: SecurityProfile = field(init=False, repr=False, compare=False)
    cipher_override: tuple[CipherSuite, ...] | None = field(
        init=False, default=None, repr=False, compare=False
    )
    _contexts: dict[Side, Any] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        set_ = object.__setattr__
        set_(self, "verify", self._resolve_verify())
        self._check_rules()
        set_(self, "crl_scope", self._resolve_crl_scope())
        set_(self, "security_profile", self._resolve_profile())
        set_(self, "cipher_override", self._resolve_ciphers())
        set_(self, "identity", self._load_identity())
        set_(self, "trust", self._load_trust())
        set_(self, "_contexts", {})
        if self.verify == VerifyFlags.NONE:
            log.warning(
                "TLS peer verification is off (verify=NONE): anyone can connect or impersonate"
            )

    def _resolve_verify(self) -> VerifyFlags:
        try:
            return validate_verify_flags(self.verify)
        except (TypeError, ValueError) as exc:
            raise SettingsError(str(exc)) from None

    def _check_rules(self) -> None:
        """The rules between plain fields, checked before any file is read."""
        if not isinstance(self.verify_depth, int) or not 0 <= self.verify_depth <= 100:
            raise SettingsError(
                f"verify_depth must be an integer 0..100, got {self.verify_depth!r}"
            )
        if not self.handshake_timeout > 0:
            raise SettingsError(f"handshake_timeout must be > 0 s, got {self.handshake_timeout!r}")
        if self.private_key is not None and self.certificate is None:
            raise SettingsError("private_key given without certificate")
        if self.check_hostname and VerifyFlags.PEER not in self.verify:
            raise SettingsError(
                "check_hostname=True needs verify flag PEER: nothing would enforce it"
            )

    def _resolve_crl_scope(self) -> CRLScope:
        try:
            return CRLScope(self.crl_scope)
        except ValueError:
            raise SettingsError(
                f"crl_scope must be 'leaf' or 'chain', not {self.crl_scope!r}"
            ) from None

    def _load_identity(self) -> Identity | None:
        if self.certificate is None:
            return None
        return load_identity(
            Path(self.certificate),
            None if self.private_key is None else Path(self.private_key),
            password=self.password,
            on_private_key_password=self.on_private_key_password,
        )

    def _load_trust(self) -> TrustStore:
        """The CAs and CRLs; verifying with no CA to verify against is refused here."""
        ca_dir = None if self.ca_directory is None else Path(self.ca_directory)
        trust = load_trust(as_paths(self.ca_files), ca_dir, as_paths(self.crl_files))
        if VerifyFlags.PEER in self.verify and not trust.ca_certificates:
            raise SettingsError(
                "verification is on (PEER) but no CA is trusted: set ca_files or ca_directory, "
                "or explicitly choose verify=VerifyFlags.NONE"
            )
        return trust

    def _resolve_profile(self) -> SecurityProfile:
        try:
            profile = get_profile(self.profile)
        except ValueError as exc:
            raise SettingsError(str(exc)) from None
        if profile.retired:
            message = _retired(profile.name, profile.annex)
            warnings.warn(message, stacklevel=4)
        return profile

    def _resolve_ciphers(self) -> tuple[CipherSuite, ...] | None:
        if self.ciphers is None:
            return None
        names = [self.ciphers] if isinstance(self.ciphers, str) else list(self.ciphers)
        if not names:
            raise SettingsError(
                "ciphers is empty: give at least one cipher suite or leave it unset"
            )
        suites = []
        for name in names:
            try:
                suites.append(lookup_cipher(name))
            except ValueError as exc:
                raise SettingsError(str(exc)) from None
        return tuple(suites)

    def context(self, side: Side) -> Any:
        """The shared OpenSSL context for ``side`` (an ``OpenSSL.SSL.Context``), built once."""
        contexts: dict[Side, Any] = self._contexts
        if side not in contexts:
            from dicomtls.tls.context import build_context

            contexts[side] = build_context(self, side)
        return contexts[side]

    def describe(self) -> str:
        """One line for logs: who we are, whom we trust, how we verify."""
        who = "no certificate"
        if self.identity is not None:
            who = self.identity.certificate.subject.rfc4514_string()
        return (
            f"profile={self.security_profile.name} verify={self.verify.label} "
            f"identity={who!r} trusted_cas={len(self.trust.ca_certificates)} "
            f"crls={len(self.trust.crls)}"
        )
