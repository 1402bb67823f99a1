"""A test PKI: CAs, DICOM node identities with the right purposes, and deliberately broken ones."""

from dicomtls.pki.authority import CertificateAuthority, CredentialFiles, Credentials, KeySpec
from dicomtls.pki.broken import BrokenKind, issue_broken
from dicomtls.pki.bundle import PKIFiles, init_pki, load_ca

__all__ = [
    "BrokenKind",
    "CertificateAuthority",
    "CredentialFiles",
    "Credentials",
    "KeySpec",
    "PKIFiles",
    "init_pki",
    "issue_broken",
    "load_ca",
]
