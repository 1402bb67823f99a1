"""Turning validated :class:`TLSSettings` into one OpenSSL context per side.

A context is built once and shared by every connection of that side; the
per-connection state (who the peer is, what the verify callback saw) lives on
the :class:`~dicomtls.tls.engine.TLSEngine`, reached through the connection's
app data, so that the context never has to be rebuilt per association.
"""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING, Any

from OpenSSL import SSL, crypto

from dicomtls.tls.errors import SettingsError
from dicomtls.tls.flags import Side, VerifyFlags
from dicomtls.tls.trust import CRLScope

if TYPE_CHECKING:
    from dicomtls.tls.settings import TLSSettings

__all__ = ["build_context"]

# Renegotiation is a known attack surface and DICOM never needs it (RFC 9325 3.5);
# compression enables CRIME (RFC 9325 3.3); the server picks the suite (RFC 9325 4.2).
_OPTIONS = (
    SSL.OP_NO_RENEGOTIATION
    | SSL.OP_NO_COMPRESSION
    | SSL.OP_CIPHER_SERVER_PREFERENCE
    | SSL.OP_NO_SSLv2
    | SSL.OP_NO_SSLv3
)


def _verify_trampoline(
    connection: SSL.Connection, certificate: crypto.X509, errnum: int, depth: int, ok: int
) -> bool:
    """The context-wide verify callback: hands each call to the connection's engine."""
    engine = connection.get_app_data()
    decision: bool = engine.on_openssl_verify(certificate, errnum, depth, bool(ok))
    return decision


def _openssl_verify_mode(flags: VerifyFlags, side: Side) -> int:
    mode = int(flags.for_side(side))
    if side is Side.CLIENT:
        # Client NONE still verifies and reports (the seed's table); OpenSSL does exactly
        # that with SSL_VERIFY_NONE and a callback, without ending the handshake.
        return mode & SSL.VERIFY_PEER
    return mode


def _cipher_lists(settings: TLSSettings) -> tuple[str, str]:
    profile = settings.security_profile
    level = profile.openssl_security_level
    if settings.cipher_override is None:
        return profile.openssl_cipher_string(), profile.openssl_tls13_ciphersuites()
    tls12 = [s.openssl_name for s in settings.cipher_override if not s.tls13]
    tls13 = [s.openssl_name for s in settings.cipher_override if s.tls13]
    return ":".join([*tls12, f"@SECLEVEL={level}"]), ":".join(tls13)


def _configure_protocol(ctx: SSL.Context, settings: TLSSettings) -> None:
    profile = settings.security_profile
    ctx.set_min_proto_version(profile.min_version.openssl_constant)
    ctx.set_max_proto_version(profile.max_version.openssl_constant)
    tls12, tls13 = _cipher_lists(settings)
    try:
        ctx.set_cipher_list(tls12.encode("ascii"))
    except SSL.Error:
        # An empty TLS<=1.2 list is fine when only TLS 1.3 suites were asked for.
        if not tls13 or not tls12.startswith("@"):
            raise SettingsError(f"OpenSSL accepts none of the cipher suites {tls12!r}") from None
        # OpenSSL wants a non-empty TLS 1.2 list; none of it is ever used once the minimum
        # is TLS 1.3, but the list also carries the security level that checks key sizes.
        ctx.set_cipher_list(b"DEFAULT:@SECLEVEL=" + str(profile.openssl_security_level).encode())
        ctx.set_min_proto_version(SSL.TLS1_3_VERSION)
    try:
        ctx.set_tls13_ciphersuites(tls13.encode("ascii"))
    except SSL.Error:
        raise SettingsError(f"OpenSSL accepts none of the TLS 1.3 suites {tls13!r}") from None
    if not tls13:
        ctx.set_max_proto_version(min(profile.max_version.openssl_constant, SSL.TLS1_2_VERSION))


def _configure_identity(ctx: SSL.Context, settings: TLSSettings, side: Side) -> None:
    identity = settings.identity
    if identity is None:
        if side is Side.SERVER:
            raise SettingsError("a TLS server needs a certificate and private key")
        return
    ctx.use_certificate(identity.certificate)
    for intermediate in identity.intermediates:
        ctx.add_extra_chain_cert(intermediate)
    ctx.use_privatekey(identity.private_key)
    try:
        ctx.check_privatekey()
    except SSL.Error:
        raise SettingsError("private key does not match the certificate") from None


def _configure_trust(ctx: SSL.Context, settings: TLSSettings) -> None:
    store = ctx.get_cert_store()
    assert store is not None  # a fresh context always has one
    for ca in settings.trust.ca_certificates:
        with contextlib.suppress(crypto.Error):  # the same CA listed twice is harmless
            store.add_cert(crypto.X509.from_cryptography(ca))
    if settings.trust.crls:
        for crl in settings.trust.crls:
            store.add_crl(crl)
        flags = crypto.X509StoreFlags.CRL_CHECK
        if settings.crl_scope is CRLScope.CHAIN:
            flags |= crypto.X509StoreFlags.CRL_CHECK_ALL
        store.set_flags(flags)
    ctx.set_verify_depth(settings.verify_depth)


def build_context(settings: TLSSettings, side: Side) -> Any:
    """Build the OpenSSL context ``side`` uses for every connection."""
    ctx = SSL.Context(SSL.TLS_METHOD)
    ctx.set_options(_OPTIONS)
    _configure_protocol(ctx, settings)
    _configure_identity(ctx, settings, side)
    _configure_trust(ctx, settings)
    ctx.set_verify(_openssl_verify_mode(settings.verify, side), _verify_trampoline)
    if side is Side.SERVER:
        ctx.set_session_id(b"dicomtls")
        if settings.identity is not None and VerifyFlags.PEER in settings.verify:
            # Tell clients which CAs we accept, so one holding several certificates picks right.
            for ca in settings.trust.ca_certificates:
                ctx.add_client_ca(ca)
    return ctx
