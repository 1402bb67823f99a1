"""The asyncio API: the same names and signatures as ``dicomtls``, with ``await``.

import dicomtls.aio as dicomtls

async with await dicomtls.associate("pacs", 2762, tls, called_ae="PACS") as assoc:
    print(await assoc.echo())
"""

from __future__ import annotations

from dicomtls.dimse.status import Status
from dicomtls.errors import AssociationError, ConnectError, DicomTLSError
from dicomtls.net.association import Association, associate
from dicomtls.net.client import Peer
from dicomtls.net.hooks import Services, StatusError
from dicomtls.net.link import LinkEvents
from dicomtls.net.qr_scu import QueryModel
from dicomtls.net.scp import DicomServer, serve_dicom, storage_policy
from dicomtls.node.store_scp import DurableStoreHandler
from dicomtls.tls.certinfo import CertificateInfo
from dicomtls.tls.errors import TLSHandshakeError
from dicomtls.tls.flags import VerifyFlags
from dicomtls.tls.settings import TLSSettings
from dicomtls.tls.verify_error import VerifyError
from dicomtls.ul.acse import Proposal

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
    "associate",
    "serve_dicom",
    "storage_policy",
]
