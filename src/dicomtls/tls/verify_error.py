"""X.509 verification results: OpenSSL's stable codes, their messages, and how to fix each.

The numbers are OpenSSL's ``X509_V_ERR_*`` values, so a code read from a DCMTK
log or an ``openssl verify`` run means the same here. The hint is what DCMTK
and the seed SDK do not give: one line telling a person what to change.

When the verify callback returns False for a certificate OpenSSL found valid,
OpenSSL has no error of its own to report, and ``X509_verify_cert`` falls back to
``X509_V_ERR_UNSPECIFIED`` (its "safety net": a failed verification never leaves
the result OK). We report the same code, marked ``by_callback`` so that the message
says who refused the certificate.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any

__all__ = ["VerifyCode", "VerifyError"]


class VerifyCode(enum.IntEnum):
    """OpenSSL's certificate verification result codes (``X509_V_OK``, ``X509_V_ERR_*``)."""

    OK = 0
    UNSPECIFIED = 1
    UNABLE_TO_GET_ISSUER_CERT = 2
    UNABLE_TO_GET_CRL = 3
    UNABLE_TO_DECRYPT_CERT_SIGNATURE = 4
    UNABLE_TO_DECRYPT_CRL_SIGNATURE = 5
    UNABLE_TO_DECODE_ISSUER_PUBLIC_KEY = 6
    CERT_SIGNATURE_FAILURE = 7
    CRL_SIGNATURE_FAILURE = 8
    CERT_NOT_YET_VALID = 9
    CERT_HAS_EXPIRED = 10
    CRL_NOT_YET_VALID = 11
    CRL_HAS_EXPIRED = 12
    ERROR_IN_CERT_NOT_BEFORE_FIELD = 13
    ERROR_IN_CERT_NOT_AFTER_FIELD = 14
    ERROR_IN_CRL_LAST_UPDATE_FIELD = 15
    ERROR_IN_CRL_NEXT_UPDATE_FIELD = 16
    OUT_OF_MEM = 17
    DEPTH_ZERO_SELF_SIGNED_CERT = 18
    SELF_SIGNED_CERT_IN_CHAIN = 19
    UNABLE_TO_GET_ISSUER_CERT_LOCALLY = 20
    UNABLE_TO_VERIFY_LEAF_SIGNATURE = 21
    CERT_CHAIN_TOO_LONG = 22
    CERT_REVOKED = 23
    NO_ISSUER_PUBLIC_KEY = 24
    PATH_LENGTH_EXCEEDED = 25
    INVALID_PURPOSE = 26
    CERT_UNTRUSTED = 27
    CERT_REJECTED = 28
    SUBJECT_ISSUER_MISMATCH = 29
    AKID_SKID_MISMATCH = 30
    AKID_ISSUER_SERIAL_MISMATCH = 31
    KEYUSAGE_NO_CERTSIGN = 32
    UNABLE_TO_GET_CRL_ISSUER = 33
    UNHANDLED_CRITICAL_EXTENSION = 34
    KEYUSAGE_NO_CRL_SIGN = 35
    UNHANDLED_CRITICAL_CRL_EXTENSION = 36
    INVALID_NON_CA = 37
    PROXY_PATH_LENGTH_EXCEEDED = 38
    KEYUSAGE_NO_DIGITAL_SIGNATURE = 39
    PROXY_CERTIFICATES_NOT_ALLOWED = 40
    INVALID_EXTENSION = 41
    INVALID_POLICY_EXTENSION = 42
    NO_EXPLICIT_POLICY = 43
    DIFFERENT_CRL_SCOPE = 44
    UNSUPPORTED_EXTENSION_FEATURE = 45
    UNNESTED_RESOURCE = 46
    PERMITTED_VIOLATION = 47
    EXCLUDED_VIOLATION = 48
    SUBTREE_MINMAX = 49
    APPLICATION_VERIFICATION = 50
    UNSUPPORTED_CONSTRAINT_TYPE = 51
    UNSUPPORTED_CONSTRAINT_SYNTAX = 52
    UNSUPPORTED_NAME_SYNTAX = 53
    CRL_PATH_VALIDATION_ERROR = 54
    PATH_LOOP = 55
    SUITE_B_INVALID_VERSION = 56
    SUITE_B_INVALID_ALGORITHM = 57
    SUITE_B_INVALID_CURVE = 58
    SUITE_B_INVALID_SIGNATURE_ALGORITHM = 59
    SUITE_B_LOS_NOT_ALLOWED = 60
    SUITE_B_CANNOT_SIGN_P_384_WITH_P_256 = 61
    HOSTNAME_MISMATCH = 62
    EMAIL_MISMATCH = 63
    IP_ADDRESS_MISMATCH = 64
    DANE_NO_MATCH = 65
    EE_KEY_TOO_SMALL = 66
    CA_KEY_TOO_SMALL = 67
    CA_MD_TOO_WEAK = 68
    INVALID_CALL = 69
    STORE_LOOKUP = 70
    NO_VALID_SCTS = 71
    PROXY_SUBJECT_NAME_VIOLATION = 72
    OCSP_VERIFY_NEEDED = 73
    OCSP_VERIFY_FAILED = 74
    OCSP_CERT_UNKNOWN = 75
    UNSUPPORTED_SIGNATURE_ALGORITHM = 76
    SIGNATURE_ALGORITHM_MISMATCH = 77
    SIGNATURE_ALGORITHM_INCONSISTENCY = 78
    INVALID_CA = 79
    PATHLEN_INVALID_FOR_NON_CA = 80
    PATHLEN_WITHOUT_KU_KEY_CERT_SIGN = 81
    KU_KEY_CERT_SIGN_INVALID_FOR_NON_CA = 82
    ISSUER_NAME_EMPTY = 83
    SUBJECT_NAME_EMPTY = 84
    MISSING_AUTHORITY_KEY_IDENTIFIER = 85
    MISSING_SUBJECT_KEY_IDENTIFIER = 86
    EMPTY_SUBJECT_ALT_NAME = 87
    EMPTY_SUBJECT_SAN_NOT_CRITICAL = 88
    CA_BCONS_NOT_CRITICAL = 89
    AUTHORITY_KEY_IDENTIFIER_CRITICAL = 90
    SUBJECT_KEY_IDENTIFIER_CRITICAL = 91
    CA_CERT_MISSING_KEY_USAGE = 92
    EXTENSIONS_REQUIRE_VERSION_3 = 93
    EC_KEY_EXPLICIT_PARAMS = 94


# OpenSSL's own wording (X509_verify_cert_error_string) for the codes people meet.
_MESSAGES: dict[int, str] = {
    VerifyCode.OK: "ok",
    VerifyCode.UNSPECIFIED: "unspecified certificate verification error",
    VerifyCode.UNABLE_TO_GET_ISSUER_CERT: "unable to get issuer certificate",
    VerifyCode.UNABLE_TO_GET_CRL: "unable to get certificate CRL",
    VerifyCode.CERT_SIGNATURE_FAILURE: "certificate signature failure",
    VerifyCode.CRL_SIGNATURE_FAILURE: "CRL signature failure",
    VerifyCode.CERT_NOT_YET_VALID: "certificate is not yet valid",
    VerifyCode.CERT_HAS_EXPIRED: "certificate has expired",
    VerifyCode.CRL_NOT_YET_VALID: "CRL is not yet valid",
    VerifyCode.CRL_HAS_EXPIRED: "CRL has expired",
    VerifyCode.DEPTH_ZERO_SELF_SIGNED_CERT: "self-signed certificate",
    VerifyCode.SELF_SIGNED_CERT_IN_CHAIN: "self-signed certificate in certificate chain",
    VerifyCode.UNABLE_TO_GET_ISSUER_CERT_LOCALLY: "unable to get local issuer certificate",
    VerifyCode.UNABLE_TO_VERIFY_LEAF_SIGNATURE: "unable to verify the first certificate",
    VerifyCode.CERT_CHAIN_TOO_LONG: "certificate chain too long",
    VerifyCode.CERT_REVOKED: "certificate revoked",
    VerifyCode.NO_ISSUER_PUBLIC_KEY: "issuer certificate doesn't have a public key",
    VerifyCode.PATH_LENGTH_EXCEEDED: "path length constraint exceeded",
    VerifyCode.INVALID_PURPOSE: "unsuitable certificate purpose",
    VerifyCode.CERT_UNTRUSTED: "certificate not trusted",
    VerifyCode.CERT_REJECTED: "certificate rejected",
    VerifyCode.KEYUSAGE_NO_CERTSIGN: "key usage does not include certificate signing",
    VerifyCode.UNHANDLED_CRITICAL_EXTENSION: "unhandled critical extension",
    VerifyCode.KEYUSAGE_NO_DIGITAL_SIGNATURE: "key usage does not include digital signature",
    VerifyCode.HOSTNAME_MISMATCH: "hostname mismatch",
    VerifyCode.EMAIL_MISMATCH: "email address mismatch",
    VerifyCode.IP_ADDRESS_MISMATCH: "IP address mismatch",
    VerifyCode.EE_KEY_TOO_SMALL: "EE certificate key too weak",
    VerifyCode.CA_KEY_TOO_SMALL: "CA certificate key too weak",
    VerifyCode.CA_MD_TOO_WEAK: "CA signature digest algorithm too weak",
    VerifyCode.INVALID_CA: "invalid CA certificate",
    VerifyCode.APPLICATION_VERIFICATION: "application verification failure",
}

_TRUST = "add the issuing CA (and any intermediate CA) to the CA file, or ask the peer to send its full chain"
_HINTS: dict[int, str] = {
    VerifyCode.OK: "",
    VerifyCode.UNABLE_TO_GET_ISSUER_CERT: _TRUST,
    VerifyCode.UNABLE_TO_GET_ISSUER_CERT_LOCALLY: _TRUST,
    VerifyCode.UNABLE_TO_VERIFY_LEAF_SIGNATURE: _TRUST,
    VerifyCode.SELF_SIGNED_CERT_IN_CHAIN: (
        "the peer's chain ends in a root CA we do not trust: add that root to the CA file "
        "if it is the right one"
    ),
    VerifyCode.DEPTH_ZERO_SELF_SIGNED_CERT: (
        "the peer uses a self-signed certificate: trust it explicitly by adding it to the CA "
        "file, or issue the peer a certificate from a CA"
    ),
    VerifyCode.CERT_HAS_EXPIRED: "renew the certificate, and check both machines' clocks",
    VerifyCode.CERT_NOT_YET_VALID: "the certificate's validity starts later: check both machines' clocks",
    VerifyCode.CRL_HAS_EXPIRED: "publish a fresh CRL from the CA and reload it",
    VerifyCode.CRL_NOT_YET_VALID: "the CRL starts later: check the clocks of this machine and the CA",
    VerifyCode.UNABLE_TO_GET_CRL: (
        "CRL checking is on but there is no CRL for this CA: add the CA's CRL, or check only "
        "the leaf (crl_scope='leaf')"
    ),
    VerifyCode.CERT_REVOKED: "the CA revoked this certificate: issue the peer a new one",
    VerifyCode.CERT_CHAIN_TOO_LONG: "the chain has more intermediate CAs than allowed: raise verify_depth",
    VerifyCode.PATH_LENGTH_EXCEEDED: "an intermediate CA's pathLenConstraint forbids this chain: reissue the CA",
    VerifyCode.INVALID_PURPOSE: (
        "the certificate lacks the TLS client/server purpose; DICOM nodes act as both SCU and "
        "SCP, so issue it with extendedKeyUsage serverAuth and clientAuth"
    ),
    VerifyCode.INVALID_CA: "a certificate used as a CA is not marked CA:TRUE: reissue the CA certificate",
    VerifyCode.HOSTNAME_MISMATCH: (
        "add the host name used to connect as a subjectAltName DNS entry, or connect by a "
        "name the certificate lists, or turn check_hostname off"
    ),
    VerifyCode.IP_ADDRESS_MISMATCH: (
        "add the IP address used to connect as a subjectAltName IP entry, or connect by a "
        "name the certificate lists, or turn check_hostname off"
    ),
    VerifyCode.EE_KEY_TOO_SMALL: (
        "the key is too small for the security profile: BCP 195 needs RSA >= 2048 bits or "
        "ECDSA P-256 or better; reissue the certificate with a bigger key"
    ),
    VerifyCode.CA_KEY_TOO_SMALL: "a CA key is too small for the profile: the CA needs RSA >= 2048 or ECDSA",
    VerifyCode.CA_MD_TOO_WEAK: "the certificate is signed with SHA-1 or MD5: reissue it signed with SHA-256",
    VerifyCode.CERT_SIGNATURE_FAILURE: "the signature does not verify: the certificate was altered or issued by another key",
    VerifyCode.KEYUSAGE_NO_CERTSIGN: "the issuing CA lacks keyUsage keyCertSign: reissue the CA certificate",
    VerifyCode.KEYUSAGE_NO_DIGITAL_SIGNATURE: "the certificate's keyUsage lacks digitalSignature: reissue it",
    VerifyCode.UNHANDLED_CRITICAL_EXTENSION: "the certificate has a critical extension OpenSSL does not know",
    VerifyCode.APPLICATION_VERIFICATION: "the application's own check refused the certificate",
}
_GENERIC_HINT = "inspect the certificate with 'dicomtls inspect' and reissue it from a trusted CA"
_CALLBACK_MESSAGE = "the verify callback rejected a certificate that passed OpenSSL's checks"
_CALLBACK_HINT = (
    "on_verify returned False although OpenSSL found no error: the application's own rule "
    "refused the certificate, and the callback knows why"
)


@dataclass(frozen=True)
class VerifyError:
    """The result of verifying one certificate: a stable code, OpenSSL's message, and a hint.

    ``code`` is a plain int so that codes a newer OpenSSL adds still work.
    """

    code: int
    depth: int | None = None
    by_callback: bool = False
    """The verify callback refused a certificate OpenSSL had no objection to."""

    @classmethod
    def from_openssl(cls, errnum: int, depth: int | None = None) -> VerifyError:
        return cls(int(errnum), depth)

    @classmethod
    def callback_rejection(cls, depth: int | None = None) -> VerifyError:
        """What OpenSSL records when the callback says no to a certificate it found valid."""
        return cls(VerifyCode.UNSPECIFIED, depth, by_callback=True)

    @property
    def ok(self) -> bool:
        return self.code == VerifyCode.OK

    @property
    def name(self) -> str:
        try:
            return VerifyCode(self.code).name
        except ValueError:
            return f"UNKNOWN_{self.code}"

    @property
    def message(self) -> str:
        if self.by_callback:
            return _CALLBACK_MESSAGE
        text = _MESSAGES.get(self.code)
        if text is not None:
            return text
        return self.name.lower().replace("_", " ")

    @property
    def hint(self) -> str:
        if self.by_callback:
            return _CALLBACK_HINT
        return _HINTS.get(self.code, _GENERIC_HINT)

    def __str__(self) -> str:
        where = "" if self.depth is None else f" at depth {self.depth}"
        return f"{self.name} ({self.code}){where}: {self.message}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "code": self.code,
            "name": self.name,
            "depth": self.depth,
            "message": self.message,
            "hint": self.hint,
            "by_callback": self.by_callback,
        }
