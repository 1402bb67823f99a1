"""S3's XML answers (a listing page, an error) read as they stream in, with bounds.

An S3 endpoint is a server the node does not control (a misconfigured proxy, a compromised
host): its XML is hostile input. ElementTree builds a tree of everything, and 8 MiB of
``<a>`` nested without end costs some 750 MiB of elements before the parse fails. Here expat
calls back per element and nothing is kept but the few fields the client reads: the
nesting is bounded (S3's answers are 3 levels deep), a document type (entities, billion
laughs) is refused outright (S3 never sends one), and so is a page with more entries
than S3 ever returns.
"""

from __future__ import annotations

from xml.parsers import expat

__all__ = ["MAX_DEPTH", "MAX_ENTRIES", "S3XmlError", "S3XmlReader"]

MAX_DEPTH = 8
"""ListBucketResult > Contents > Owner > ID is 4; errors are 2."""
MAX_ENTRIES = 1000
"""S3 returns at most 1,000 keys a page (we never ask for more)."""
MAX_TEXT = 64 << 10
"""The text of one element (a key is at most 1,024 bytes; an error message a line)."""


class S3XmlError(ValueError):
    """The answer is not XML the client can use (malformed, or past a bound)."""


class S3XmlReader:
    """Feed an answer's bytes; then ``fields`` holds the text of the root's children that
    were asked for, and ``entries`` the text of the fields asked for in each ``entry``."""

    def __init__(
        self, fields: tuple[str, ...], entry: str = "", entry_fields: tuple[str, ...] = ()
    ):
        self.fields: dict[str, str] = {}
        self.entries: list[dict[str, str]] = []
        self._wanted, self._entry, self._entry_wanted = fields, entry, entry_fields
        self._path: list[str] = []
        self._text: list[str] = []
        self._size = 0
        parser = expat.ParserCreate(namespace_separator=" ")
        parser.StartDoctypeDeclHandler = self._doctype
        parser.StartElementHandler = self._start
        parser.EndElementHandler = self._end
        parser.CharacterDataHandler = self._characters
        self._parser = parser

    def feed(self, data: bytes, final: bool = False) -> None:
        try:
            self._parser.Parse(data, final)
        except expat.ExpatError as exc:
            raise S3XmlError(f"not well-formed XML: {exc}") from None

    def _doctype(self, *_: object) -> None:
        raise S3XmlError("a document type declaration (S3 sends none)")

    def _start(self, name: str, _attributes: object) -> None:
        if len(self._path) >= MAX_DEPTH:
            raise S3XmlError(f"XML nested past {MAX_DEPTH} levels")
        local = name.rpartition(" ")[2]
        self._path.append(local)
        self._text, self._size = [], 0
        if len(self._path) == 2 and local == self._entry:
            if len(self.entries) >= MAX_ENTRIES:
                raise S3XmlError(f"more than {MAX_ENTRIES:,} entries in one answer")
            self.entries.append({})

    def _characters(self, text: str) -> None:
        self._size += len(text)
        if self._size > MAX_TEXT:
            raise S3XmlError(f"an element's text past {MAX_TEXT:,} characters")
        self._text.append(text)

    def _end(self, _name: str) -> None:
        local, depth = self._path.pop(), len(self._path)
        if depth == 1 and local in self._wanted:
            self.fields[local] = "".join(self._text)
        elif depth == 2 and self._path[1] == self._entry and local in self._entry_wanted:
            self.entries[-1][local] = "".join(self._text)
        self._text, self._size = [], 0
