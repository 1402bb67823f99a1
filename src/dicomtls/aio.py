"""The asyncio API: the same names and signatures as ``dicomtls``, with ``await``.

import dicomtls.aio as dicomtls

async with await dicomtls.associate("pacs", 2762, tls, called_ae="PACS") as assoc:
    print(await assoc.echo())
"""

from __future__ import annotations

import dicomtls
from dicomtls.dimse.status import Status as Status
from dicomtls.errors import AssociationError as AssociationError
from dicomtls.errors import ConnectError as ConnectError
from dicomtls.errors import DicomTLSError as DicomTLSError
from dicomtls.net.association import Association as Association
from dicomtls.net.association import associate as associate
from dicomtls.net.client import Peer as Peer
from dicomtls.net.hooks import Services as Services
from dicomtls.net.hooks import StatusError as StatusError
from dicomtls.net.link import LinkEvents as LinkEvents
from dicomtls.net.qr_scu import QueryModel as QueryModel
from dicomtls.net.scp import DicomServer as DicomServer
from dicomtls.net.scp import serve_dicom as serve_dicom
from dicomtls.net.scp import storage_policy as storage_policy
from dicomtls.node.store_scp import DurableStoreHandler as DurableStoreHandler
from dicomtls.tls.certinfo import CertificateInfo as CertificateInfo
from dicomtls.tls.errors import TLSHandshakeError as TLSHandshakeError
from dicomtls.tls.flags import VerifyFlags as VerifyFlags
from dicomtls.tls.settings import TLSSettings as TLSSettings
from dicomtls.tls.verify_error import VerifyError as VerifyError
from dicomtls.ul.acse import Proposal as Proposal

#: The front door's names, each here in its asyncio form where it does I/O (the imports
#: above say ``X as X`` so type checkers see them exported too).
__all__ = [name for name in dicomtls.__all__ if name != "__version__"]
