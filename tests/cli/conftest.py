"""The CLI tests borrow the interop tests' RSA PKI, the one DCMTK accepts."""

from ..interop.conftest import rsa_pki  # noqa: F401
