"""A certificate's names exactly as OpenSSL prints them on one line, and a readable twin.

The seed's certificate string shows subject and issuer in OpenSSL's one-line form
(``X509_NAME_print_ex`` with ``XN_FLAG_ONELINE``, what ``openssl x509 -nameopt oneline``
prints): ``CN = Test Client, O = "LEAD Technologies, Inc."``. Its rules (OpenSSL's
crypto/asn1/a_strex.c and charmap.h):

- the attributes in order, ``", "`` between RDNs and ``" + "`` inside a multi-valued one,
  each as ``SN = value`` with OpenSSL's short name for the type, or the dotted OID when
  OpenSSL has none;
- a value is read by its string type: UTF8String byte by byte, BMPString two bytes a
  character, UniversalString four, every other string type (T61String too) one byte, one
  Latin-1 character; each character is written as UTF-8, and a code point UTF-8 cannot
  carry (a surrogate) is left out;
- every byte above 0x7F and every control character (below 0x20, and DEL) becomes ``\\XX``;
- ``"`` and ``\\`` get a backslash; ``, + ; < >`` anywhere, ``#`` first, or a space first or
  last make OpenSSL put the whole value in double quotes instead (the last character of
  the value counts as last only, never as first);
- a value that is not a character string (the BIT STRING of x500UniqueIdentifier) is ``#``
  and the hex of its DER encoding.

The names are read from the certificate's own DER, not from cryptography's decoded
:class:`~cryptography.x509.Name`: the two disagree where OpenSSL is lenient (cryptography
refuses a T61String holding Latin-1, which OpenSSL reads) or where a string type is not
UTF-8 (cryptography writes and reads T61String as UTF-8, OpenSSL reads it as Latin-1).

The readable form is the same string with each character above 0x7F shown as itself when
:func:`dicomtls.text.printable` would leave it alone (``CN = Zürich``); C1 controls, bidi
overrides and line separators stay escaped the way OpenSSL escapes them, so the readable
form is as safe to log or print as the exact one. It is also short: past 1,024 characters
it stops with how many more there were, so that a peer's name of 100 kB (a certificate may
be that long) does not make every log line that names it as long.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import NamedTuple

from cryptography import x509
from OpenSSL._util import ffi as _openssl_ffi
from OpenSSL._util import lib as _openssl_lib

from dicomtls.text import clipped, printable

__all__ = [
    "PrintedName",
    "certificate_der_names",
    "certificate_names",
    "print_name",
    "subject_values",
]

_UTF8_STRING, _BMP_STRING, _UNIVERSAL_STRING = 12, 30, 28
# Universal tags OpenSSL prints as text, and how many bytes make one character (a_strex.c).
_CHARACTER_WIDTH = {
    _UTF8_STRING: 1,  # read byte by byte: its bytes are already UTF-8
    18: 1,  # NumericString
    19: 1,  # PrintableString
    20: 1,  # T61String
    22: 1,  # IA5String
    23: 1,  # UTCTime
    24: 1,  # GeneralizedTime
    26: 1,  # VisibleString
    _UNIVERSAL_STRING: 4,
    _BMP_STRING: 2,
}
_QUOTED_ANYWHERE = frozenset(",+;<>")
_BACKSLASHED = frozenset('"\\')
_OID_TEXT_MAX = 79  # OpenSSL writes the dotted OID into an 80-byte buffer
# Printable ASCII that needs no escape: all but " + , ; < > and backslash; and what the
# ends need quoted (a leading space or #, a trailing space).
_PLAIN = re.compile(r"[\x20\x21\x23-\x2a\x2d-\x3a\x3d\x3f-\x5b\x5d-\x7e]*")
_QUOTED_AT_THE_ENDS = re.compile(r"\A[ #].|\A \Z| \Z", re.S)
_UNWRITABLE = "\ud800"  # a UTF8String's stray bytes decode to U+DC80-U+DCFF, never to this


@dataclass(frozen=True)
class PrintedName:
    """One distinguished name, printed two ways."""

    openssl: str
    """Byte for byte what OpenSSL's one-line form prints: ASCII only, every escape applied."""
    readable: str
    """The same with the characters that are safe to show written as themselves."""


class _Attribute(NamedTuple):
    rdn: int
    oid: str
    tag: int
    content: bytes
    encoding: bytes
    """The whole TLV, for the ``#hex`` form of a value that is not a string."""


def certificate_names(cert: x509.Certificate) -> tuple[PrintedName, PrintedName]:
    """The certificate's (subject, issuer), as OpenSSL prints them and readable."""
    issuer, subject = _tbs_names(cert.tbs_certificate_bytes)
    return print_name(subject), print_name(issuer)


def certificate_der_names(der: bytes) -> tuple[PrintedName, PrintedName]:
    """(subject, issuer) of a DER certificate, even one cryptography refuses to load."""
    certificate = _element(der, 0)
    tbs = _children(der, certificate)[0]
    issuer, subject = _tbs_names(der[tbs.start : tbs.end])
    return print_name(subject), print_name(issuer)


def subject_values(cert: x509.Certificate, oid: str) -> list[str]:
    """The subject's values of attribute ``oid`` (dotted), read the way OpenSSL reads them:
    a T61String as Latin-1, which cryptography's parsed subject refuses to read at all; a
    value that is no string as OpenSSL shows it, ``#`` and its DER in hex, so that every
    value counts."""
    _, subject = _tbs_names(cert.tbs_certificate_bytes)
    return [
        _dump(attribute) if (characters := _read(attribute)) is None else characters
        for attribute in _attributes(subject)
        if attribute.oid == oid
    ]


def print_name(name_der: bytes) -> PrintedName:
    """A DER-encoded ``Name`` (the SEQUENCE with its header) in both forms."""
    exact: list[str] = []
    readable: list[str] = []
    previous: _Attribute | None = None
    for attribute in _attributes(name_der):
        if previous is not None:
            separator = " + " if attribute.rdn == previous.rdn else ", "
            exact.append(separator)
            readable.append(separator)
        field = _field_name(attribute.oid) + " = "
        value, shown = _values(attribute)
        exact.append(field + value)
        readable.append(field + shown)
        previous = attribute
    return PrintedName(openssl="".join(exact), readable=clipped("".join(readable)))


# -- DER: just enough to walk a TBSCertificate down to its names ------------------------------


class _Element(NamedTuple):
    tag: int
    start: int
    content: int
    end: int


def _element(data: bytes, at: int) -> _Element:
    """The DER element that starts at ``at``: its identifier octet and where it lies."""
    start = at
    try:
        tag = data[at]
        at += 1
        if tag & 0x1F == 0x1F:  # high tag number: its continuation octets follow
            while data[at] & 0x80:
                at += 1
            at += 1
        length = data[at]
        at += 1
        if length & 0x80:
            count = length & 0x7F
            if count == 0 or at + count > len(data):
                raise ValueError("indefinite or truncated DER length")
            length = int.from_bytes(data[at : at + count], "big")
            at += count
    except IndexError:
        raise ValueError("truncated DER element") from None
    if at + length > len(data):
        raise ValueError("DER element longer than its container")
    return _Element(tag, start, at, at + length)


def _children(data: bytes, parent: _Element) -> list[_Element]:
    children = []
    at = parent.content
    while at < parent.end:
        child = _element(data, at)
        if child.end > parent.end:
            raise ValueError("DER element longer than its container")
        children.append(child)
        at = child.end
    return children


def _tbs_names(tbs: bytes) -> tuple[bytes, bytes]:
    """(issuer, subject) of a TBSCertificate, each the complete DER of its Name."""
    fields = _children(tbs, _element(tbs, 0))
    if fields and fields[0].tag == 0xA0:  # [0] version: absent in a v1 certificate
        fields = fields[1:]
    if len(fields) < 5:
        raise ValueError("TBSCertificate too short to hold issuer and subject")
    issuer, subject = fields[2], fields[4]  # after serial and signature; validity between
    return tbs[issuer.start : issuer.end], tbs[subject.start : subject.end]


def _attributes(name: bytes) -> Iterator[_Attribute]:
    top = _element(name, 0)
    if top.tag != 0x30:
        raise ValueError(f"a Name is a SEQUENCE, not tag 0x{top.tag:02x}")
    for rdn, rdn_set in enumerate(_children(name, top)):
        if rdn_set.tag != 0x31:
            raise ValueError(f"an RDN is a SET, not tag 0x{rdn_set.tag:02x}")
        for pair in _children(name, rdn_set):
            parts = _children(name, pair)
            if len(parts) != 2 or parts[0].tag != 0x06:
                raise ValueError("an attribute is a SEQUENCE of an OID and a value")
            oid, value = parts
            yield _Attribute(
                rdn=rdn,
                oid=_dotted(name[oid.content : oid.end]),
                tag=value.tag,
                content=name[value.content : value.end],
                encoding=name[value.start : value.end],
            )


@functools.lru_cache(maxsize=1024)
def _dotted(content: bytes) -> str:
    arcs: list[int] = []
    value = 0
    for octet in content:
        value = (value << 7) | (octet & 0x7F)
        if not octet & 0x80:
            arcs.append(value)
            value = 0
    if not arcs or content[-1] & 0x80:
        raise ValueError("malformed OBJECT IDENTIFIER")
    first = min(arcs[0] // 40, 2)
    return ".".join(str(arc) for arc in (first, arcs[0] - 40 * first, *arcs[1:]))


# -- printing --------------------------------------------------------------------------------

_DOTTED = re.compile(r"[0-9]+(\.[0-9]+)+")


@functools.lru_cache(maxsize=1024)
def _field_name(oid: str) -> str:
    """OpenSSL's short name for an attribute type (``CN``, ``emailAddress``), asked of
    OpenSSL's own object table, or the dotted OID when it has none."""
    if _DOTTED.fullmatch(oid):
        nid = _openssl_lib.OBJ_txt2nid(oid.encode("ascii"))
        if nid != _openssl_lib.NID_undef:
            short = _openssl_lib.OBJ_nid2sn(nid)
            if short != _openssl_ffi.NULL:
                name: bytes = _openssl_ffi.string(short)
                return name.decode("ascii")
    return oid[:_OID_TEXT_MAX]


def _read(attribute: _Attribute) -> str | None:
    """The value's characters; None for a value that is no string, or cannot be read: an
    odd-length BMPString (OpenSSL refuses to load such a name; here it shows as its DER
    rather than as half a character)."""
    width = _CHARACTER_WIDTH.get(attribute.tag)
    if width is None or len(attribute.content) % width:
        return None
    return _characters(attribute.content, attribute.tag, width)


def _dump(attribute: _Attribute) -> str:
    """A value as OpenSSL shows one it does not read as text: ``#`` and its DER in hex."""
    return "#" + attribute.encoding.hex().upper()


def _values(attribute: _Attribute) -> tuple[str, str]:
    """The value as OpenSSL prints it, and readable."""
    characters = _read(attribute)
    if characters is None:
        dump = _dump(attribute)
        return dump, dump
    if _PLAIN.fullmatch(characters) and not _QUOTED_AT_THE_ENDS.search(characters):
        return characters, characters  # nothing to escape or quote: most names
    exact = _escaped(characters, readable=False)
    return exact, exact if characters.isascii() else _escaped(characters, readable=True)


def _escaped(characters: str, *, readable: bool) -> str:
    quoted = False
    out: list[str] = []
    last = len(characters) - 1
    for index, character in enumerate(characters):
        # OpenSSL marks the last character as last only, even when it is also the first.
        first, final = index == 0 and index != last, index == last
        text, needs_quotes = _escape(character, first=first, last=final, readable=readable)
        quoted = quoted or needs_quotes
        out.append(text)
    body = "".join(out)
    return f'"{body}"' if quoted else body


def _characters(content: bytes, tag: int, width: int) -> str:
    """The value's characters as OpenSSL reads them. A byte of a UTF8String that is not
    valid UTF-8 comes as a lone surrogate (``surrogateescape``), to be written as ``\\XX``;
    a code point UTF8_putc cannot write (a surrogate, or beyond Unicode) as
    :data:`_UNWRITABLE`, which still counts as a character for first and last."""
    if tag == _UTF8_STRING:
        return content.decode("utf-8", "surrogateescape")
    if width == 1:
        return content.decode("latin-1")
    codes = (
        int.from_bytes(content[at : at + width], "big") for at in range(0, len(content), width)
    )
    return "".join(
        _UNWRITABLE if 0xD800 <= code <= 0xDFFF or code > 0x10FFFF else chr(code) for code in codes
    )


def _escape(character: str, *, first: bool, last: bool, readable: bool) -> tuple[str, bool]:
    """How one character is written, and whether it makes OpenSSL quote the value."""
    if character == _UNWRITABLE:
        return "", False
    if ord(character) >= 0x80:
        return _escape_beyond_ascii(character, readable=readable), False
    return _escape_ascii(character, first=first, last=last)


def _escape_beyond_ascii(character: str, *, readable: bool) -> str:
    """A stray byte of a UTF8String as itself, ``\\XX``; any other character as the
    ``\\XX`` of its UTF-8 bytes, unless the readable form may show it as it is."""
    code = ord(character)
    if 0xDC80 <= code <= 0xDCFF:
        return f"\\{code - 0xDC00:02X}"
    if readable and printable(character) == character:
        return character
    return "".join(f"\\{b:02X}" for b in character.encode("utf-8"))


def _escape_ascii(character: str, *, first: bool, last: bool) -> tuple[str, bool]:
    """A backslash before ``"`` and ``\\``, quotes for the separators (and for ``#`` or a
    space at the ends), ``\\XX`` for a control character; the rest as it is."""
    if character in _BACKSLASHED:
        return "\\" + character, False
    if character in _QUOTED_ANYWHERE:
        return character, True
    if (character == " " and (first or last)) or (character == "#" and first):
        return character, True
    code = ord(character)
    if code < 0x20 or code == 0x7F:
        return f"\\{code:02X}", False
    return character, False
