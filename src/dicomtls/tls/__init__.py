"""PS3.15 Annex B secure transport: the TLS half of a secure DICOM connection.

Names load when first used, as in :mod:`dicomtls`: importing one light module of this
package (``dicomtls.tls.flags``) does not load OpenSSL and cryptography's X.509 with it,
which keeps them out of a command's ``--help``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from dicomtls.lazy import lazy_names

_HOME = {
    "CertificateInfo": "dicomtls.tls.certinfo",
    "Purpose": "dicomtls.tls.certinfo",
    "HandshakeStage": "dicomtls.tls.errors",
    "SettingsError": "dicomtls.tls.errors",
    "TLSError": "dicomtls.tls.errors",
    "TLSHandshakeError": "dicomtls.tls.errors",
    "Side": "dicomtls.tls.flags",
    "VerifyFlags": "dicomtls.tls.flags",
    "PROFILES": "dicomtls.tls.profiles",
    "SecurityProfile": "dicomtls.tls.profiles",
    "get_profile": "dicomtls.tls.profiles",
    "SessionInfo": "dicomtls.tls.session",
    "TLSSettings": "dicomtls.tls.settings",
    "VerifyCode": "dicomtls.tls.verify_error",
    "VerifyError": "dicomtls.tls.verify_error",
}

__all__ = [
    "PROFILES",
    "CertificateInfo",
    "HandshakeStage",
    "Purpose",
    "SecurityProfile",
    "SessionInfo",
    "SettingsError",
    "Side",
    "TLSError",
    "TLSHandshakeError",
    "TLSSettings",
    "VerifyCode",
    "VerifyError",
    "VerifyFlags",
    "get_profile",
]

if TYPE_CHECKING:
    from dicomtls.tls.certinfo import CertificateInfo, Purpose
    from dicomtls.tls.errors import HandshakeStage, SettingsError, TLSError, TLSHandshakeError
    from dicomtls.tls.flags import Side, VerifyFlags
    from dicomtls.tls.profiles import PROFILES, SecurityProfile, get_profile
    from dicomtls.tls.session import SessionInfo
    from dicomtls.tls.settings import TLSSettings
    from dicomtls.tls.verify_error import VerifyCode, VerifyError


__getattr__, __dir__ = lazy_names(globals(), _HOME)
