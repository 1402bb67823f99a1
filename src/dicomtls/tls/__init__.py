"""PS3.15 Annex B secure transport: the TLS half of a secure DICOM connection."""

from dicomtls.tls.certinfo import CertificateInfo, Purpose
from dicomtls.tls.errors import HandshakeStage, SettingsError, TLSError, TLSHandshakeError
from dicomtls.tls.flags import Side, VerifyFlags
from dicomtls.tls.profiles import PROFILES, SecurityProfile, get_profile
from dicomtls.tls.session import SessionInfo
from dicomtls.tls.settings import TLSSettings
from dicomtls.tls.verify_error import VerifyCode, VerifyError

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
