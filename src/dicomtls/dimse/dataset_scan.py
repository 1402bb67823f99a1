"""Check a data set's encoding as it streams in, and keep a few top-level attributes (PS3.5 7).

A storage SCP must not call an object stored before it knows the bytes form a data
set. Re-reading every received file with a full parser costs more than receiving it;
:class:`DatasetScanner` instead walks the element headers of the fragments as they
arrive: it steps over values by their lengths (a gigabyte of pixel data costs one
addition), descends into sequences and items to find where undefined lengths end, and
keeps the raw values of the top-level attributes it was asked for. Sans-I/O: bytes in,
a verdict and those values out.

What it checks is the structure: whole element headers, explicit VRs that exist,
values, items and sequences that end where their lengths and delimiters say, and a
data set that ends on an element boundary. Value contents are the application's
business (those it keeps, it decodes with pydicom).
"""

from __future__ import annotations

import functools
import struct
import zlib
from collections.abc import Collection, Iterable
from dataclasses import dataclass, field

from dicomtls.dimse.part10 import LONG_VRS
from dicomtls.dimse.transfer_syntax import (
    DEFLATED,
    EXPLICIT_VR_BE,
    IMPLICIT_VR_LE,
    is_native,
    syntax_name,
)
from dicomtls.errors import DicomTLSError

__all__ = [
    "DEFAULT_MAX_DEPTH",
    "DEFAULT_MAX_INFLATION",
    "MAX_KEPT",
    "DatasetScanError",
    "DatasetScanner",
    "ScannedDataset",
]

_DEFLATED_CHUNK = 1 << 20  # inflate at most this much per step: a small PDV may expand 1000x
#: A deflated data set may inflate to this many times its size, beyond the first 16 MiB:
#: real ones (reports, mostly text) stay far below; a deflate bomb (about 1000:1) does not.
DEFAULT_MAX_INFLATION = 200
_INFLATION_FLOOR = 16 << 20
#: Sequences nested deeper than this are refused: real objects nest a handful of levels, and
#: each open level costs memory and time that a hostile peer could multiply.
DEFAULT_MAX_DEPTH = 32

_SHORT_VRS = frozenset(
    {
        b"AE",
        b"AS",
        b"AT",
        b"CS",
        b"DA",
        b"DS",
        b"DT",
        b"FD",
        b"FL",
        b"IS",
        b"LO",
        b"LT",
        b"PN",
        b"SH",
        b"SL",
        b"SS",
        b"ST",
        b"TM",
        b"UI",
        b"UL",
        b"US",
    }
)
_UNDEFINED = 0xFFFFFFFF
_ITEM = 0xFFFEE000
_ITEM_END = 0xFFFEE00D
_SEQUENCE_END = 0xFFFEE0DD
_PIXEL_DATA = 0x7FE00010
#: A value asked for but longer than this is not kept (its length is reported instead): no
#: identifying attribute's VR comes near it (LO is 64 characters, PS3.5 6.2).
MAX_KEPT = 1 << 16
_SPECIFIC_CHARACTER_SET = 0x00080005
#: VRs whose text is in the data set's character set, and the bytes that reset an
#: ISO 2022 escape (PS3.5 6.1.2.5.3): components and groups of a name, values, lines.
_CHARSET_DELIMITERS = {
    "PN": {0x5E, 0x3D, 0x5C},
    **{vr: {0x5C, 0x09, 0x0A, 0x0C, 0x0D} for vr in ("SH", "LO", "ST", "LT", "UC", "UT")},
}


#: Implicit VR Little Endian, and the retired Papyrus 3 variant of it.
_IMPLICIT_SYNTAXES = frozenset({IMPLICIT_VR_LE, "1.2.840.10008.1.20"})
_BIG_ENDIAN_SYNTAXES = frozenset({EXPLICIT_VR_BE})
#: Deflated Explicit VR Little Endian, and JPIP Referenced Deflate (PS3.5 A.5, A.6).
_DEFLATED_SYNTAXES = frozenset({DEFLATED, "1.2.840.10008.1.2.4.95"})


@dataclass(frozen=True)
class _Encoding:
    """How a transfer syntax encodes its data set (PS3.5 10): VR, byte order, deflate."""

    implicit: bool
    little_endian: bool
    deflated: bool

    @classmethod
    def of(cls, transfer_syntax: str) -> _Encoding:
        """Every transfer syntax but these few is explicit VR little endian, the compressed
        ones included (their pixel data is encapsulated, the rest is not), and so is a
        private one: the standard's default encoding (PS3.5 10.1)."""
        return cls(
            transfer_syntax in _IMPLICIT_SYNTAXES,
            transfer_syntax not in _BIG_ENDIAN_SYNTAXES,
            transfer_syntax in _DEFLATED_SYNTAXES,
        )


@functools.lru_cache(maxsize=2)
def _structs(little_endian: bool) -> tuple[struct.Struct, struct.Struct, struct.Struct]:
    order = "<" if little_endian else ">"
    return (
        struct.Struct(order + "HH2sH"),  # tag, VR, short length (explicit VR)
        struct.Struct(order + "HHI"),  # tag, 4-byte length (implicit VR, items, delimiters)
        struct.Struct(order + "I"),  # the 4-byte length after a long VR
    )


class DatasetScanError(DicomTLSError, ValueError):
    """The bytes are not a data set in the transfer syntax they were sent in."""


@dataclass
class _Frame:
    """An open sequence, item, or run of encapsulated fragments."""

    kind: str  # "sequence" | "item" | "fragments"
    end: int | None  # absolute offset where it ends; None: a delimiter ends it
    tag: int
    implicit: bool  # how what it holds is encoded (UN sequences are implicit VR, PS3.5 6.2.2)


@functools.lru_cache(maxsize=256)
def _dictionary_vr(tag: int) -> str:
    from pydicom.datadict import dictionary_VR

    try:
        return str(dictionary_VR(tag))
    except KeyError:
        return "UN"


@functools.lru_cache(maxsize=256)
def keyword_tag(keyword: str) -> int:
    """The tag of a data dictionary keyword; KeyError for a keyword that is not one."""
    from pydicom.datadict import tag_for_keyword

    tag = tag_for_keyword(keyword)
    if tag is None:
        raise KeyError(f"{keyword!r} is not a DICOM keyword")
    return int(tag)


@dataclass(frozen=True)
class ScannedDataset:
    """What the scan found: the kept top-level values, undecoded, and the size."""

    transfer_syntax: str
    kept: dict[int, tuple[str | None, bytes]]
    length: int
    too_long: dict[int, int] = field(default_factory=dict)
    """Tags asked for whose value was longer than :data:`MAX_KEPT`, with its length: not
    kept, so :meth:`text` says "" for them, which is not their value."""

    def text(self, tag: int) -> str:
        """A kept value as text ("" when absent): decoded in the data set's character set
        where its VR says so, multiple values joined by backslashes as on the wire."""
        found = self.kept.get(tag)
        if found is None:
            return ""
        vr, raw = found
        vr = vr or _dictionary_vr(tag)
        delimiters = _CHARSET_DELIMITERS.get(vr)
        if delimiters is None:
            return raw.decode("ascii", "replace").strip("\0 ")
        from pydicom.charset import decode_bytes

        text = decode_bytes(raw, self._encodings, delimiters).strip("\0 ")
        return text.rstrip("=") if vr == "PN" else text  # no empty trailing component groups

    @functools.cached_property
    def _encodings(self) -> list[str]:
        terms = self.text(_SPECIFIC_CHARACTER_SET).split("\\")
        from pydicom.charset import convert_encodings

        return convert_encodings([t.strip() for t in terms] if any(terms) else None)

    def texts(self, keywords: Iterable[str]) -> dict[str, str]:
        """Keyword -> :meth:`text`, for the kept attributes among ``keywords``."""
        tags = {keyword: keyword_tag(keyword) for keyword in keywords}
        return {keyword: self.text(tag) for keyword, tag in tags.items() if tag in self.kept}


class DatasetScanner:
    """Feed a data set's bytes in order, in pieces of any size; then :meth:`finish`.

    ``keep`` names the top-level tags (as ``0xggggeeee`` integers) whose values to keep;
    sequences may nest ``max_depth`` levels deep. The first structural error raises
    :class:`DatasetScanError`, from :meth:`feed` or :meth:`finish`, and every later call
    raises it again. ``elements`` counts the headers read so far: a caller that must share
    its thread can tell dense input (many tiny elements) from bulk (pixel data).
    """

    def __init__(
        self,
        transfer_syntax: str,
        keep: Collection[int] = (),
        *,
        max_depth: int = DEFAULT_MAX_DEPTH,
        max_inflation: int = DEFAULT_MAX_INFLATION,
    ) -> None:
        self.transfer_syntax = transfer_syntax
        self.max_depth = max_depth
        self.max_inflation = max_inflation
        self.elements = 0
        self.inflated = 0  # bytes a deflated data set has inflated to so far
        self.top_level_tag = -1
        """The tag of the last top-level element begun: top-level tags ascend (PS3.5 7.1), so
        a reader that wants a few can stop once past them (:meth:`kept_so_far`)."""
        self._deflated = 0
        encoding = _Encoding.of(transfer_syntax)
        self._base_implicit = encoding.implicit
        self._implicit = self._base_implicit  # the encoding where we are (inner frames differ)
        self._tag_vr_length, self._tag_length, self._length = _structs(encoding.little_endian)
        self._item_marker = b"\xfe\xff" if encoding.little_endian else b"\xff\xfe"
        self._inflater = zlib.decompressobj(-zlib.MAX_WBITS) if encoding.deflated else None
        self._native = is_native(transfer_syntax)  # pixel data of a defined length only
        self._keep = frozenset(keep)
        self._kept: dict[int, tuple[str | None, bytes]] = {}
        self._too_long: dict[int, int] = {}
        self._frames: list[_Frame] = []
        self._depth = 0  # open sequences (and encapsulated pixel data), items not counted
        self._offset = 0  # bytes of the data set consumed so far
        self._head = bytearray()  # an element header cut by a fragment boundary
        self._skip = 0  # value bytes still to step over
        self._keeping: tuple[int, str | None, bytearray] | None = None  # a value being kept
        self._error: DatasetScanError | None = None

    # -- input ------------------------------------------------------------------------------

    def feed(self, data: bytes | bytearray | memoryview) -> None:
        if self._error is not None:
            raise self._error
        view = memoryview(data).cast("B") if not isinstance(data, bytes) else memoryview(data)
        try:
            if self._inflater is None:
                self._consume(view)
            else:
                self._inflate(view)
        except DatasetScanError as exc:
            self._error = exc
            raise

    def _inflate(self, view: memoryview | bytes) -> None:
        inflater = self._inflater
        assert inflater is not None  # feed() calls this for a deflated syntax only
        self._deflated += len(view)
        try:
            while view:
                inflated = inflater.decompress(view, _DEFLATED_CHUNK)
                self.inflated += len(inflated)
                if self.inflated > max(_INFLATION_FLOOR, self.max_inflation * self._deflated):
                    raise DatasetScanError(
                        f"the deflated data set inflates more than {self.max_inflation} times "
                        f"({self._deflated} bytes to over {self.inflated}): refused as a deflate bomb"
                    )
                self._consume(memoryview(inflated))
                view = inflater.unconsumed_tail
        except zlib.error as exc:
            raise DatasetScanError(f"the deflated data set does not inflate: {exc}") from None

    def finish(self) -> ScannedDataset:
        """The verdict once every byte was fed: the data set, or DatasetScanError."""
        if self._error is not None:
            raise self._error
        if self._inflater is not None:
            try:
                self._consume(memoryview(self._inflater.flush()))
            except DatasetScanError as exc:
                self._error = exc
                raise
        problem = None
        if self._head or self._skip or self._keeping is not None:
            problem = f"the data set ends inside an element, at byte {self._offset}"
        else:
            self._close_defined_frames()
            if self._frames:
                frame = self._frames[-1]
                problem = f"the data set ends inside the {frame.kind} of {_tag_name(frame.tag)}"
        if problem is not None:
            self._error = DatasetScanError(problem)
            raise self._error
        return ScannedDataset(self.transfer_syntax, self._kept, self._offset, self._too_long)

    def kept_so_far(self) -> ScannedDataset:
        """The values kept from what was fed, for a reader that stops before the end (the rest
        of the data set goes unchecked)."""
        if self._error is not None:
            raise self._error
        return ScannedDataset(self.transfer_syntax, dict(self._kept), self._offset)

    # -- the walk ---------------------------------------------------------------------------

    def _consume(self, view: memoryview) -> None:
        pos, end = 0, len(view)
        while pos < end:
            if self._skip:
                take = min(self._skip, end - pos)
                if self._keeping is not None:
                    self._keeping[2].extend(view[pos : pos + take])
                self._skip -= take
                pos += take
                self._offset += take
                if not self._skip and self._keeping is not None:
                    tag, vr, value = self._keeping
                    self._kept[tag] = (vr, bytes(value))
                    self._keeping = None
                continue
            self._close_defined_frames()
            pos = self._header(view, pos, end)

    def _header(self, view: memoryview, pos: int, end: int) -> int:
        """Read the next element header (maybe cut across feeds); returns the new position."""
        need = self._header_size(view, pos, end)
        have = len(self._head)
        if have + (end - pos) < need:
            self._head += view[pos:end]
            return end
        if have:
            self._head += view[pos : pos + need - have]
            header: bytes | memoryview = bytes(self._head)
            self._head.clear()
            used = need - have
        else:
            header = view[pos : pos + need]
            used = need
        self._offset += need
        self.elements += 1
        self._element(header)
        return pos + used

    def _header_size(self, view: memoryview, pos: int, end: int) -> int:
        """8 bytes, or 12 for an explicit long VR (known once the VR bytes are in)."""
        if self._implicit:
            return 8
        first = bytes(self._head[:6]) + bytes(view[pos : pos + max(0, 6 - len(self._head))])
        if len(first) < 6:
            return 8  # not known yet: wait for more bytes
        if first[:2] == self._item_marker:  # (FFFE,xxxx): items and delimiters, no VR
            return 8
        return 12 if first[4:6] in LONG_VRS else 8

    def _element(self, header: bytes | memoryview) -> None:
        tag, vr, length = self._parse_header(header)
        if tag >> 16 == 0xFFFE:
            self._delimiter_or_item(tag, length)
            return
        inside = self._frames[-1] if self._frames else None
        if inside is None:
            self.top_level_tag = tag
        if inside is not None and inside.kind != "item":
            raise DatasetScanError(
                f"{_tag_name(tag)} inside the {inside.kind} of {_tag_name(inside.tag)}, "
                "where only items may be"
            )
        if length == _UNDEFINED:
            self._open_undefined(tag, vr)
            return
        self._check_fits(tag, length)
        if vr == b"SQ":
            self._push(_Frame("sequence", self._offset + length, tag, self._implicit))
            return
        self._skip = length
        if inside is None and tag in self._keep:
            self._keep_value(tag, vr, length)

    def _parse_header(self, header: bytes | memoryview) -> tuple[int, bytes | None, int]:
        """The tag, the VR (None where the encoding or an item gives none) and the length."""
        if self._implicit:
            group, element, length = self._tag_length.unpack_from(header)
            return group << 16 | element, None, length
        group, element, vr, short = self._tag_vr_length.unpack_from(header)
        tag = group << 16 | element
        if group == 0xFFFE:  # items and delimiters have no VR, and a 4-byte length
            return tag, None, self._length.unpack_from(header, 4)[0]
        if vr in LONG_VRS:
            return tag, vr, self._length.unpack_from(header, 8)[0]
        if vr in _SHORT_VRS:
            return tag, vr, short
        raise DatasetScanError(
            f"{_tag_name(tag)} at byte {self._offset - len(header)} has no valid VR ({bytes(vr)!r})"
        )

    def _keep_value(self, tag: int, vr: bytes | None, length: int) -> None:
        """Keep the value about to be stepped over, unless it is too long to be what we want."""
        if length > MAX_KEPT:
            self._too_long[tag] = length
            return
        text_vr = None if vr is None else vr.decode("ascii")
        if length == 0:
            self._kept[tag] = (text_vr, b"")
        else:
            self._keeping = (tag, text_vr, bytearray())

    def _open_undefined(self, tag: int, vr: bytes | None) -> None:
        if tag == _PIXEL_DATA and self._native:
            raise DatasetScanError(
                f"Pixel Data {_tag_name(tag)} has an undefined length (encapsulated), which "
                f"{syntax_name(self.transfer_syntax)} cannot have: its pixel data is native, "
                "of a defined length (PS3.5 A.4)"
            )
        if vr in (b"OB", b"OW") and tag == _PIXEL_DATA:
            self._push(_Frame("fragments", None, tag, self._implicit))  # encapsulated pixels
        elif vr is None or vr == b"SQ":
            self._push(_Frame("sequence", None, tag, self._implicit))
        elif vr == b"UN":  # a sequence of unknown VR, encoded in implicit VR (PS3.5 6.2.2)
            self._push(_Frame("sequence", None, tag, True))
        else:
            raise DatasetScanError(
                f"{_tag_name(tag)} has an undefined length, which VR {vr.decode()} cannot have"
            )

    def _delimiter_or_item(self, tag: int, length: int) -> None:
        frame = self._frames[-1] if self._frames else None
        if tag == _ITEM:
            self._item(frame, length)
            return
        wanted = {_ITEM_END: "item", _SEQUENCE_END: "sequence"}.get(tag)
        if wanted is None:
            raise DatasetScanError(f"unknown delimiter {_tag_name(tag)} at byte {self._offset - 8}")
        if not _closes(frame, wanted):
            raise DatasetScanError(
                f"a {wanted} delimiter at byte {self._offset - 8} that closes no {wanted}"
            )
        if length != 0:
            raise DatasetScanError(f"a {wanted} delimiter with length {length}, not 0")
        self._pop()

    def _item(self, frame: _Frame | None, length: int) -> None:
        """An item opens inside a sequence; in encapsulated pixel data it is a fragment,
        whose length must be defined, and which is stepped over."""
        if frame is None or frame.kind == "item":
            raise DatasetScanError(f"an item at byte {self._offset - 8} outside any sequence")
        if frame.kind == "fragments" or length != _UNDEFINED:
            if length == _UNDEFINED:
                raise DatasetScanError("a pixel data fragment with an undefined length")
            self._check_fits(_ITEM, length)
        if frame.kind == "fragments":
            self._skip = length
            return
        end = None if length == _UNDEFINED else self._offset + length
        self._push(_Frame("item", end, frame.tag, frame.implicit))

    def _check_fits(self, tag: int, length: int) -> None:
        for frame in reversed(self._frames):
            if frame.end is not None:
                if self._offset + length > frame.end:
                    raise DatasetScanError(
                        f"{_tag_name(tag)} ({length} bytes) runs past the end of the "
                        f"{frame.kind} of {_tag_name(frame.tag)}"
                    )
                return

    def _close_defined_frames(self) -> None:
        while self._frames and self._frames[-1].end == self._offset:
            self._pop()

    def _push(self, frame: _Frame) -> None:
        if frame.kind != "item":
            if self._depth >= self.max_depth:
                raise DatasetScanError(
                    f"{_tag_name(frame.tag)} at byte {self._offset} opens a sequence nested "
                    f"more than {self.max_depth} levels deep"
                )
            self._depth += 1
        self._frames.append(frame)
        self._implicit = frame.implicit

    def _pop(self) -> None:
        if self._frames.pop().kind != "item":
            self._depth -= 1
        self._implicit = self._frames[-1].implicit if self._frames else self._base_implicit


def _closes(frame: _Frame | None, wanted: str) -> bool:
    """A delimiter closes the innermost frame when it is open to a delimiter (an undefined
    length) and of the delimiter's kind; a sequence delimiter also ends encapsulated pixels."""
    if frame is None or frame.end is not None:
        return False
    return frame.kind == wanted or (wanted == "sequence" and frame.kind == "fragments")


def _tag_name(tag: int) -> str:
    return f"({tag >> 16:04X},{tag & 0xFFFF:04X})"
