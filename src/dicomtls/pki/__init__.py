"""A test PKI: CAs, DICOM node identities with the right purposes, and deliberately broken ones."""

from dicomtls.pki.authority import CertificateAuthority, Identity, IdentityFiles, KeySpec
from dicomtls.pki.broken import BrokenKind, issue_broken

__all__ = [
    "BrokenKind",
    "CertificateAuthority",
    "Identity",
    "IdentityFiles",
    "KeySpec",
    "issue_broken",
]
