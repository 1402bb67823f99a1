"""Who issued what: the CAs a server takes client certificates from, and a trusted CA that only
shares a name with the one that issued a certificate.

A server asking for a client certificate names the CAs it accepts (the certificate_authorities
of its CertificateRequest, RFC 8446 4.2.4 and RFC 5246 7.4.4). When it then refuses ours, those
names beside our certificate's issuer are the whole diagnosis: "it takes CN = Hospital CA, ours
is from CN = Vendor CA". OpenSSL keeps the names it received; this reads them, bounded and
printed as certificate names are, since the server writes them.

The other half: two sites that each created a CA with the same (default) name trust "the same"
CA only by name. OpenSSL then says it found no issuer, and the CA file seems to hold it.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from cryptography import x509
from OpenSSL import SSL

from dicomtls.tls.certinfo import CertificateInfo
from dicomtls.tls.names import certificate_names, print_name
from dicomtls.tls.verify_error import VerifyCode, VerifyError

MAX_NAMED = 16
"""A server may name hundreds (a full trust store); the first few say enough."""

#: The alerts with which a server refuses a client certificate for who issued it, or for lack
#: of one: where the names the server takes are the answer.
REFUSALS_OF_OUR_ISSUER = frozenset({"unknown_ca", "certificate_required", "bad_certificate"})


def accepted_issuers(conn: Any) -> tuple[str, ...]:
    """The CAs the server named (client side), readable; empty if it asked for no certificate
    or named none."""
    try:
        names = conn.get_client_ca_list()
    except SSL.Error:
        return ()
    return tuple(_readable(name.der()) for name in names[:MAX_NAMED])


def _readable(name_der: bytes) -> str:
    try:
        return print_name(name_der).readable
    except ValueError as exc:  # OpenSSL re-encoded it, so this is not expected: still, say so
        return f"(a name that cannot be read: {exc})"


def our_issuer(conn: Any) -> str | None:
    """The issuer of the certificate we present, readable; None when we present none."""
    certificate = conn.get_certificate(as_cryptography=True)
    if certificate is None:
        return None
    return certificate_names(certificate)[1].readable


def issuers_sentence(accepted: tuple[str, ...], ours: str | None, alert: str | None) -> str:
    """The CAs the server takes beside the one ours is from, in a sentence. A server refusing
    our CA (``unknown_ca``) while naming a CA of our issuer's name trusts another CA of that
    name: one created again, or another site's with the default name."""
    if alert == "unknown_ca" and ours in accepted:
        return (
            f"it takes a CA named '{ours}', as ours is, yet does not know ours: it trusts "
            "another CA of that name (one created again, or another site's)"
        )
    more = " (and others)" if len(accepted) == MAX_NAMED else ""
    named = "; ".join(f"'{name}'" for name in accepted)
    issuer = f"; ours is issued by '{ours}'" if ours is not None else ""
    return f"it takes client certificates issued by {named}{more}{issuer}"


NO_TRUSTED_ISSUER = (
    VerifyCode.UNABLE_TO_GET_ISSUER_CERT_LOCALLY,
    VerifyCode.UNABLE_TO_GET_ISSUER_CERT,
    VerifyCode.SELF_SIGNED_CERT_IN_CHAIN,  # a root sent along, its own issuer
    VerifyCode.DEPTH_ZERO_SELF_SIGNED_CERT,
)
"""The verify errors of a certificate whose issuer is not among the CAs we trust."""


def trusted_namesake(issuer: str, trusted: Iterable[x509.Certificate]) -> str | None:
    """A trusted CA named ``issuer`` (OpenSSL's one-line form), readable; for a certificate
    OpenSSL found no trusted issuer for, that CA shares the name and not the key."""
    for ca in trusted:
        subject = certificate_names(ca)[0]
        if subject.openssl == issuer:
            return subject.readable
    return None


def issuer_hint(
    info: CertificateInfo | None, error: VerifyError, trusted: Iterable[x509.Certificate]
) -> str:
    """The verify error's advice, unless a trusted CA has the missing issuer's name."""
    if error.code in NO_TRUSTED_ISSUER and info is not None:
        namesake = trusted_namesake(info.issuer, trusted)
        if namesake is not None:
            return (
                f"we trust a CA named '{namesake}', but not the one that issued this "
                "certificate: the same name with another key (a CA created again, or another "
                "site's); add the peer's CA certificate to the CA file if it is the right one"
            )
    return error.hint
