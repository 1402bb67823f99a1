"""The seven DICOM upper-layer PDUs (PS3.8 9.3.2-9.3.8) and :func:`decode_pdu`.

Sans-I/O: bytes in, dataclasses out, and back. ``decode_pdu`` takes exactly one
complete PDU (framing is :class:`~dicomtls.ul.reader.PDUReader`'s job) and hands
P-DATA-TF payloads back as read-only memoryview slices of its input, so a
multi-megabyte image fragment is never copied here.
"""

from __future__ import annotations

import collections
import enum
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import ClassVar, Generic, Self, TypeVar

from dicomtls.ul._wire import (
    PDU_HEADER,
    U16,
    U32,
    as_byte_view,
    decode_ae,
    decode_echoed_ae,
    decode_uid,
    encode_ae,
    encode_echoed_ae,
    encode_uid,
    item,
)
from dicomtls.ul.codes import (
    REASONS_BY_SOURCE,
    AbortReason,
    AbortSource,
    ItemType,
    PDUType,
    RejectReason,
    RejectResult,
    RejectSource,
)
from dicomtls.ul.errors import LocalProtocolError, PDUError
from dicomtls.ul.items import (
    PresentationContextAC,
    PresentationContextRQ,
    UserInformation,
    check_context_id,
    decode_items,
)

__all__ = [
    "DICOM_APPLICATION_CONTEXT",
    "MAX_PDVS",
    "MCH_COMMAND",
    "MCH_LAST",
    "PDU",
    "PDV",
    "Abort",
    "AssociateAC",
    "AssociateRJ",
    "AssociateRQ",
    "PDataTF",
    "ReleaseRP",
    "ReleaseRQ",
    "decode_pdu",
]

#: The only application context name DICOM defines (PS3.7 Annex A.2.1).
DICOM_APPLICATION_CONTEXT = "1.2.840.10008.3.1.1.1"

#: Message control header bits (PS3.8 Annex E.2).
MCH_COMMAND = 0x01
MCH_LAST = 0x02

#: Fixed part of A-ASSOCIATE-RQ/AC after the 6-byte header: version, reserved,
#: called AE, calling AE, 32 reserved bytes (PS3.8 Table 9-11).
ASSOCIATE_FIXED = 68


def _header(pdu_type: int, length: int) -> bytes:
    if length > 0xFFFFFFFF:
        raise LocalProtocolError(f"a PDU of {length} bytes does not fit the 32-bit length field")
    return PDU_HEADER.pack(pdu_type, length)


_Code = TypeVar("_Code", bound=enum.IntEnum)


def _code(kind: type[_Code], value: int, complaint: str) -> _Code:
    """A received one-byte field as one of ``kind``'s codes; any other value is the peer's error."""
    try:
        return kind(value)
    except ValueError:
        raise PDUError(complaint) from None


# --- A-ASSOCIATE-RQ / AC (PS3.8 9.3.2, 9.3.3) ---------------------------------------


def _check_unique_ids(ids: list[int], where: str, local: bool) -> None:
    if len(set(ids)) == len(ids):
        return
    if len(ids) > 128:  # IDs are odd numbers 1..255: more contexts than that must repeat
        message = (
            f"{where} has {len(ids)} presentation contexts; PS3.8 allows at most 128 "
            "(odd IDs 1-255)"
        )
    else:
        duplicates = sorted(i for i, n in collections.Counter(ids).items() if n > 1)
        message = f"{where} repeats presentation context ID(s) {duplicates}"
    raise LocalProtocolError(message) if local else PDUError(message)


#: The most items an A-ASSOCIATE-RQ or -AC may hold: 128 presentation contexts, the
#: application context and user information items, and room for unrecognized ones.
MAX_ASSOCIATE_ITEMS = 256

_Context = TypeVar("_Context", PresentationContextRQ, PresentationContextAC)


@dataclass(frozen=True, slots=True, kw_only=True)
class _Associate(Generic[_Context]):
    """What A-ASSOCIATE-RQ and -AC share: their fields, in one layout (PS3.8 Tables 9-11, 9-17).

    They differ in their presentation context item (0x20 or 0x21), in their user identity
    sub-item (0x58 or 0x59), and in the AE titles, which the AC only echoes.
    """

    called_ae: str
    calling_ae: str
    presentation_contexts: tuple[_Context, ...]
    user_information: UserInformation
    application_context: str = DICOM_APPLICATION_CONTEXT
    protocol_version: int = 1

    # What each of the two sets for itself:
    pdu_type: ClassVar[PDUType]
    _context_type: ClassVar[ItemType]
    _identity_type: ClassVar[ItemType]

    @staticmethod
    def _encode_ae(title: str, what: str) -> bytes:
        raise NotImplementedError

    @staticmethod
    def _decode_ae(raw: memoryview, what: str) -> str:
        raise NotImplementedError

    @staticmethod
    def _decode_context(view: memoryview) -> _Context:
        raise NotImplementedError

    def encode(self) -> bytes:
        name = self.pdu_type.title
        _check_unique_ids([pc.id for pc in self.presentation_contexts], name, True)
        called = self._encode_ae(self.called_ae, "called AE title")
        calling = self._encode_ae(self.calling_ae, "calling AE title")
        contexts: list[bytes] = [pc.encode() for pc in self.presentation_contexts]
        version = self.protocol_version
        if not isinstance(version, int) or not 0 <= version <= 0xFFFF:
            raise LocalProtocolError(f"protocol version {version!r} is not 0..65535")
        if not contexts:
            raise LocalProtocolError(f"an {name} needs at least one presentation context")
        body = b"".join(
            [
                U16.pack(version),
                b"\x00\x00",
                called,
                calling,
                bytes(32),
                item(0x10, encode_uid(self.application_context, "application context name")),
                *contexts,
                self.user_information.encode(),
            ]
        )
        return _header(self.pdu_type, len(body)) + body

    @classmethod
    def decode(cls, body: memoryview) -> Self:
        name = cls.pdu_type.title
        if len(body) < ASSOCIATE_FIXED:
            raise PDUError(
                f"{name} has {len(body)} bytes after its header, fewer than 68 fixed ones"
            )
        found = decode_items(
            body[ASSOCIATE_FIXED:],
            name,
            {
                ItemType.APPLICATION_CONTEXT: partial(
                    decode_uid, what=f"application context name in the {name}"
                ),
                cls._context_type: memoryview,  # decoded once the PDU is whole
                ItemType.USER_INFORMATION: partial(
                    UserInformation.decode, identity_type=cls._identity_type
                ),
            },
            once={
                ItemType.APPLICATION_CONTEXT: "application context item",
                ItemType.USER_INFORMATION: "user information item",
            },
            most=MAX_ASSOCIATE_ITEMS,
        )
        if ItemType.APPLICATION_CONTEXT not in found:
            raise PDUError(f"{name} has no application context item 0x10")
        if cls._context_type not in found:
            raise PDUError(f"{name} has no presentation context item 0x{cls._context_type:02X}")
        if ItemType.USER_INFORMATION not in found:
            raise PDUError(f"{name} has no user information item 0x50")
        contexts = tuple(cls._decode_context(v) for v in found[cls._context_type])
        _check_unique_ids([pc.id for pc in contexts], name, False)
        return cls(
            called_ae=cls._decode_ae(body[4:20], "called AE title"),
            calling_ae=cls._decode_ae(body[20:36], "calling AE title"),
            presentation_contexts=contexts,
            user_information=found[ItemType.USER_INFORMATION][0],
            application_context=found[ItemType.APPLICATION_CONTEXT][0],
            protocol_version=U16.unpack_from(body, 0)[0],
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class AssociateRQ(_Associate[PresentationContextRQ]):
    """A-ASSOCIATE-RQ (PS3.8 9.3.2): the requestor's offer."""

    pdu_type: ClassVar[PDUType] = PDUType.ASSOCIATE_RQ
    _context_type: ClassVar[ItemType] = ItemType.PRESENTATION_CONTEXT_RQ
    _identity_type: ClassVar[ItemType] = ItemType.USER_IDENTITY_RQ
    _encode_ae = staticmethod(encode_ae)
    _decode_ae = staticmethod(decode_ae)
    _decode_context = staticmethod(PresentationContextRQ.decode)


@dataclass(frozen=True, slots=True, kw_only=True)
class AssociateAC(_Associate[PresentationContextAC]):
    """A-ASSOCIATE-AC (PS3.8 9.3.3): the acceptor's answer, one result per offered context.

    The AE title fields only echo the request and PS3.8 says not to test them, so they
    decode without validation (Latin-1, spaces stripped).
    """

    pdu_type: ClassVar[PDUType] = PDUType.ASSOCIATE_AC
    _context_type: ClassVar[ItemType] = ItemType.PRESENTATION_CONTEXT_AC
    _identity_type: ClassVar[ItemType] = ItemType.USER_IDENTITY_AC
    _encode_ae = staticmethod(encode_echoed_ae)
    _decode_ae = staticmethod(decode_echoed_ae)
    _decode_context = staticmethod(PresentationContextAC.decode)


# --- A-ASSOCIATE-RJ (PS3.8 9.3.4) ---------------------------------------------------


@dataclass(frozen=True, slots=True)
class AssociateRJ:
    """A-ASSOCIATE-RJ (PS3.8 9.3.4); ``reason`` must belong to ``source``'s enum."""

    result: RejectResult
    source: RejectSource
    reason: RejectReason

    pdu_type: ClassVar[PDUType] = PDUType.ASSOCIATE_RJ

    def encode(self) -> bytes:
        try:
            result = RejectResult(self.result)
            source = RejectSource(self.source)
            reason = REASONS_BY_SOURCE[source](self.reason)
        except ValueError as exc:
            raise LocalProtocolError(f"invalid A-ASSOCIATE-RJ: {exc}") from None
        return bytes((3, 0, 0, 0, 0, 4, 0, result, source, reason))

    @classmethod
    def decode(cls, body: memoryview) -> AssociateRJ:
        result = _code(RejectResult, body[1], f"A-ASSOCIATE-RJ result {body[1]} is not 1 or 2")
        source = _code(RejectSource, body[2], f"A-ASSOCIATE-RJ source {body[2]} is not 1, 2 or 3")
        reason = _code(
            REASONS_BY_SOURCE[source],
            body[3],
            f"A-ASSOCIATE-RJ reason {body[3]} is not defined for source {source.name}",
        )
        return cls(result, source, reason)


# --- P-DATA-TF (PS3.8 9.3.5, Annex E) -----------------------------------------------


@dataclass(frozen=True, slots=True)
class PDV:
    """One presentation data value item: a fragment of a command or data set (PS3.8 E.2)."""

    context_id: int
    message_control_header: int
    data: bytes | memoryview

    def __repr__(self) -> str:
        # Payloads can be megabytes; show their size, not their bytes.
        return (
            f"PDV(context_id={self.context_id}, message_control_header="
            f"0x{self.message_control_header:02X}, data=<{self.nbytes} bytes>)"
        )

    @property
    def is_command(self) -> bool:
        """Bit 0 of the message control header: command (1) or data set (0)."""
        return bool(self.message_control_header & MCH_COMMAND)

    @property
    def is_last(self) -> bool:
        """Bit 1 of the message control header: last fragment of the message."""
        return bool(self.message_control_header & MCH_LAST)

    @property
    def nbytes(self) -> int:
        """Payload size in bytes, whatever the item format of a memoryview payload."""
        return self.data.nbytes if isinstance(self.data, memoryview) else len(self.data)


#: The most PDV items one P-DATA-TF may carry. Senders put one or two in a PDU; empty ones
#: are 6 bytes, so a PDU of 4 MiB could hold 700,000, each a PDV and a fragment to handle,
#: seconds of the event loop's time in which no other association moves.
MAX_PDVS = 1024


@dataclass(frozen=True, slots=True)
class PDataTF:
    """P-DATA-TF (PS3.8 9.3.5): one or more PDVs.

    Use :meth:`encode_parts` to write header and payloads with ``writelines`` and no
    concatenation; :meth:`encode` joins them once for callers that want one buffer.
    """

    pdvs: tuple[PDV, ...] = ()

    pdu_type: ClassVar[PDUType] = PDUType.P_DATA_TF

    def encode_parts(self) -> list[bytes | memoryview]:
        if not self.pdvs:
            raise LocalProtocolError("a P-DATA-TF needs at least one PDV")
        parts: list[bytes | memoryview] = [b""]
        total = 0
        for pdv in self.pdvs:
            check_context_id(pdv.context_id, "PDV presentation context ID")
            if not isinstance(pdv.message_control_header, int) or not (
                0 <= pdv.message_control_header <= 3
            ):
                raise LocalProtocolError(
                    f"message control header {pdv.message_control_header!r} is not 0..3 "
                    "(bits 2-7 are reserved, PS3.8 E.2)"
                )
            size = pdv.nbytes
            parts.append(U32.pack(size + 2) + bytes((pdv.context_id, pdv.message_control_header)))
            parts.append(pdv.data)
            total += 6 + size
        parts[0] = _header(self.pdu_type, total)
        return parts

    def encode(self) -> bytes:
        return b"".join(self.encode_parts())

    @classmethod
    def decode(cls, body: memoryview) -> PDataTF:
        body = body.toreadonly()
        pdvs: list[PDV] = []
        pos = 0
        end = len(body)
        while pos < end:
            if len(pdvs) == MAX_PDVS:
                raise PDUError(
                    f"P-DATA-TF of more than {MAX_PDVS:,} PDV items (senders put one or two in "
                    "a PDU)"
                )
            if end - pos < 6:
                raise PDUError(
                    f"{end - pos} trailing byte(s) in the P-DATA-TF are too few for a PDV item"
                )
            (length,) = U32.unpack_from(body, pos)
            if length < 2:
                raise PDUError(f"PDV item length {length} leaves no room for its 2 header bytes")
            stop = pos + 4 + length
            if stop > end:
                raise PDUError(
                    f"PDV item length {length} runs past the end of the P-DATA-TF "
                    f"({end - pos - 4} bytes left)"
                )
            context_id = body[pos + 4]
            if context_id % 2 == 0:
                raise PDUError(f"PDV presentation context ID {context_id} is not odd")
            # Bits 2-7 of the message control header are reserved (PS3.8 E.2): not tested.
            pdvs.append(PDV(context_id, body[pos + 5] & 0x03, body[pos + 6 : stop]))
            pos = stop
        if not pdvs:
            raise PDUError("P-DATA-TF carries no PDV item")
        return cls(tuple(pdvs))


# --- A-RELEASE-RQ/RP, A-ABORT (PS3.8 9.3.6-9.3.8) ----------------------------------


@dataclass(frozen=True, slots=True)
class _Release:
    """A-RELEASE-RQ and -RP carry nothing but their type, in a body of 4 reserved bytes."""

    pdu_type: ClassVar[PDUType]

    def encode(self) -> bytes:
        return bytes((self.pdu_type, 0, 0, 0, 0, 4, 0, 0, 0, 0))

    @classmethod
    def decode(cls, body: memoryview) -> Self:
        return cls()


@dataclass(frozen=True, slots=True)
class ReleaseRQ(_Release):
    """A-RELEASE-RQ (PS3.8 9.3.6)."""

    pdu_type: ClassVar[PDUType] = PDUType.RELEASE_RQ


@dataclass(frozen=True, slots=True)
class ReleaseRP(_Release):
    """A-RELEASE-RP (PS3.8 9.3.7)."""

    pdu_type: ClassVar[PDUType] = PDUType.RELEASE_RP


@dataclass(frozen=True, slots=True)
class Abort:
    """A-ABORT (PS3.8 9.3.8). The reason is only significant when the provider aborts;
    from a service user any undefined value decodes as REASON_NOT_SPECIFIED."""

    source: AbortSource = AbortSource.SERVICE_USER
    reason: AbortReason = AbortReason.REASON_NOT_SPECIFIED

    pdu_type: ClassVar[PDUType] = PDUType.ABORT

    def encode(self) -> bytes:
        try:
            source = AbortSource(self.source)
            reason = AbortReason(self.reason)
        except ValueError as exc:
            raise LocalProtocolError(f"invalid A-ABORT: {exc}") from None
        return bytes((7, 0, 0, 0, 0, 4, 0, 0, source, reason))

    @classmethod
    def decode(cls, body: memoryview) -> Abort:
        source = _code(AbortSource, body[2], f"A-ABORT source {body[2]} is not 0 or 2")
        try:
            reason = AbortReason(body[3])
        except ValueError:
            if source == AbortSource.SERVICE_PROVIDER:
                raise PDUError(f"A-ABORT reason {body[3]} is not defined") from None
            reason = AbortReason.REASON_NOT_SPECIFIED
        return cls(source, reason)


PDU = AssociateRQ | AssociateAC | AssociateRJ | PDataTF | ReleaseRQ | ReleaseRP | Abort

#: PDUs whose length is fixed at 4 (PS3.8 Tables 9-21, 9-24, 9-25, 9-26).
FIXED_LENGTH_TYPES = frozenset(
    {PDUType.ASSOCIATE_RJ, PDUType.RELEASE_RQ, PDUType.RELEASE_RP, PDUType.ABORT}
)

_DECODERS: dict[int, Callable[[memoryview], PDU]] = {
    PDUType.ASSOCIATE_RQ: AssociateRQ.decode,
    PDUType.ASSOCIATE_AC: AssociateAC.decode,
    PDUType.ASSOCIATE_RJ: AssociateRJ.decode,
    PDUType.P_DATA_TF: PDataTF.decode,
    PDUType.RELEASE_RQ: ReleaseRQ.decode,
    PDUType.RELEASE_RP: ReleaseRP.decode,
    PDUType.ABORT: Abort.decode,
}


def check_header(pdu_type: int, length: int) -> PDUType:
    """Validate a PDU header on its own, so a framer can refuse before buffering the body."""
    if pdu_type not in _DECODERS:
        raise PDUError(f"unrecognized PDU type 0x{pdu_type:02X}", AbortReason.UNRECOGNIZED_PDU)
    kind = PDUType(pdu_type)
    if kind in FIXED_LENGTH_TYPES and length != 4:
        raise PDUError(f"{kind.title} has PDU length {length}; PS3.8 fixes it at 4")
    if kind in (PDUType.ASSOCIATE_RQ, PDUType.ASSOCIATE_AC) and length < ASSOCIATE_FIXED:
        raise PDUError(f"{kind.title} has PDU length {length}, fewer than its 68 fixed bytes")
    return kind


def decode_pdu(data: bytes | bytearray | memoryview) -> PDU:
    """Decode exactly one complete PDU; anything malformed raises :class:`PDUError`.

    P-DATA-TF payloads are read-only views into ``data``: keep ``data`` unchanged
    while they are in use (a viewed ``bytearray`` also cannot be resized).
    """
    view = as_byte_view(data)
    if len(view) < PDU_HEADER.size:
        raise PDUError(f"{len(view)} byte(s) are too few for a 6-byte PDU header")
    pdu_type, length = PDU_HEADER.unpack_from(view, 0)
    kind = check_header(pdu_type, length)
    if len(view) - PDU_HEADER.size != length:
        raise PDUError(
            f"{kind.title} declares PDU length {length} but {len(view) - PDU_HEADER.size} "
            "bytes follow its header"
        )
    return _DECODERS[pdu_type](view[PDU_HEADER.size :])
