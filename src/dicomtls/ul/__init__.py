"""PS3.8 DICOM upper layer, sans-I/O: PDUs and items to and from bytes, and PDU framing.

No sockets here; ``dicomtls.net`` feeds bytes in and writes the bytes we produce.
"""

from dicomtls.ul import codes, errors, items, pdu, reader
from dicomtls.ul.codes import AbortReason as AbortReason
from dicomtls.ul.codes import AbortSource as AbortSource
from dicomtls.ul.codes import ItemType as ItemType
from dicomtls.ul.codes import PDUType as PDUType
from dicomtls.ul.codes import PresentationResult as PresentationResult
from dicomtls.ul.codes import RejectReason as RejectReason
from dicomtls.ul.codes import RejectReasonACSE as RejectReasonACSE
from dicomtls.ul.codes import RejectReasonPresentation as RejectReasonPresentation
from dicomtls.ul.codes import RejectReasonServiceUser as RejectReasonServiceUser
from dicomtls.ul.codes import RejectResult as RejectResult
from dicomtls.ul.codes import RejectSource as RejectSource
from dicomtls.ul.codes import UserIdentityType as UserIdentityType
from dicomtls.ul.errors import LocalProtocolError as LocalProtocolError
from dicomtls.ul.errors import PDUError as PDUError
from dicomtls.ul.errors import ProtocolError as ProtocolError
from dicomtls.ul.errors import RemoteProtocolError as RemoteProtocolError
from dicomtls.ul.items import AsyncOpsWindow as AsyncOpsWindow
from dicomtls.ul.items import CommonExtendedNegotiation as CommonExtendedNegotiation
from dicomtls.ul.items import ExtendedNegotiation as ExtendedNegotiation
from dicomtls.ul.items import PresentationContextAC as PresentationContextAC
from dicomtls.ul.items import PresentationContextRQ as PresentationContextRQ
from dicomtls.ul.items import RawSubItem as RawSubItem
from dicomtls.ul.items import RoleSelection as RoleSelection
from dicomtls.ul.items import UserIdentityAC as UserIdentityAC
from dicomtls.ul.items import UserIdentityRQ as UserIdentityRQ
from dicomtls.ul.items import UserInformation as UserInformation
from dicomtls.ul.pdu import DICOM_APPLICATION_CONTEXT as DICOM_APPLICATION_CONTEXT
from dicomtls.ul.pdu import MAX_PDVS as MAX_PDVS
from dicomtls.ul.pdu import MCH_COMMAND as MCH_COMMAND
from dicomtls.ul.pdu import MCH_LAST as MCH_LAST
from dicomtls.ul.pdu import PDU as PDU
from dicomtls.ul.pdu import PDV as PDV
from dicomtls.ul.pdu import Abort as Abort
from dicomtls.ul.pdu import AssociateAC as AssociateAC
from dicomtls.ul.pdu import AssociateRJ as AssociateRJ
from dicomtls.ul.pdu import AssociateRQ as AssociateRQ
from dicomtls.ul.pdu import PDataTF as PDataTF
from dicomtls.ul.pdu import ReleaseRP as ReleaseRP
from dicomtls.ul.pdu import ReleaseRQ as ReleaseRQ
from dicomtls.ul.pdu import decode_pdu as decode_pdu
from dicomtls.ul.reader import DEFAULT_MAX_ASSOCIATE_LENGTH as DEFAULT_MAX_ASSOCIATE_LENGTH
from dicomtls.ul.reader import PDUReader as PDUReader

#: Each module's public names (the imports above say ``X as X`` so type checkers see them
#: exported too): the modules keep the one list of them.
__all__ = [*codes.__all__, *errors.__all__, *items.__all__, *pdu.__all__, *reader.__all__]
