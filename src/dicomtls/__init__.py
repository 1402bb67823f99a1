"""dicomtls: secure DICOM networking with a complete TLS verification model.

The front door, blocking (``dicomtls.aio`` has the same names in asyncio)::

    import dicomtls

    tls = dicomtls.TLSSettings(certificate="client.pem", private_key="client.key", ca_files="ca.pem")
    with dicomtls.associate("pacs.example.org", 2762, tls, called_ae="PACS") as assoc:
        print(hex(assoc.echo()))

Names load when first used, so ``import dicomtls`` costs next to nothing.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from dicomtls.lazy import lazy_names

__version__ = "0.1.0"

_HOME = {
    # I/O: blocking here, asyncio in dicomtls.aio
    "associate": "dicomtls.sync",
    "serve_dicom": "dicomtls.sync",
    "Association": "dicomtls.sync",
    "DicomServer": "dicomtls.sync",
    "Peer": "dicomtls.sync",
    # the same in both
    "TLSSettings": "dicomtls.tls.settings",
    "VerifyFlags": "dicomtls.tls.flags",
    "CertificateInfo": "dicomtls.tls.certinfo",
    "VerifyError": "dicomtls.tls.verify_error",
    "LinkEvents": "dicomtls.net.link",
    "Services": "dicomtls.net.hooks",
    "StatusError": "dicomtls.net.hooks",
    "storage_policy": "dicomtls.net.scp",
    "DurableStoreHandler": "dicomtls.node.store_scp",
    "QueryModel": "dicomtls.net.qr_scu",
    "Proposal": "dicomtls.ul.acse",
    "Status": "dicomtls.dimse.status",
    "DicomTLSError": "dicomtls.errors",
    "ConnectError": "dicomtls.errors",
    "TLSHandshakeError": "dicomtls.tls.errors",
    "AssociationError": "dicomtls.errors",
}

__all__ = [
    "Association",
    "AssociationError",
    "CertificateInfo",
    "ConnectError",
    "DicomServer",
    "DicomTLSError",
    "DurableStoreHandler",
    "LinkEvents",
    "Peer",
    "Proposal",
    "QueryModel",
    "Services",
    "Status",
    "StatusError",
    "TLSHandshakeError",
    "TLSSettings",
    "VerifyError",
    "VerifyFlags",
    "__version__",
    "associate",
    "serve_dicom",
    "storage_policy",
]

if TYPE_CHECKING:
    from dicomtls.dimse.status import Status
    from dicomtls.errors import AssociationError, ConnectError, DicomTLSError
    from dicomtls.net.hooks import Services, StatusError
    from dicomtls.net.link import LinkEvents
    from dicomtls.net.qr_scu import QueryModel
    from dicomtls.net.scp import storage_policy
    from dicomtls.node.store_scp import DurableStoreHandler
    from dicomtls.sync import Association, DicomServer, Peer, associate, serve_dicom
    from dicomtls.tls.certinfo import CertificateInfo
    from dicomtls.tls.errors import TLSHandshakeError
    from dicomtls.tls.flags import VerifyFlags
    from dicomtls.tls.settings import TLSSettings
    from dicomtls.tls.verify_error import VerifyError
    from dicomtls.ul.acse import Proposal


__getattr__, __dir__ = lazy_names(globals(), _HOME)
