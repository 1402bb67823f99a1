"""Peer-controlled text made safe to show: one rule for log lines, the console and audit XML.

A peer chooses its UIDs, the values of its data sets, the names in its certificate and
much of what ends up in our exception texts. Shown raw, a newline in one of them forges
a log line, an ESC sequence drives the reader's terminal, and a right-to-left override
reverses what the reader sees. :func:`printable` writes each such character as a
visible escape, the way Python's ``repr`` does (``\\n``, ``\\x1b``, ``\\u202e``):

- C0 controls (U+0000-U+001F: newline, carriage return and tab included), DEL (U+007F)
  and C1 controls (U+0080-U+009F: NEL ends a line, CSI starts a terminal sequence);
- the Unicode line and paragraph separators U+2028, U+2029;
- the bidirectional embeddings, overrides and isolates U+202A-U+202E, U+2066-U+2069
  (the "Trojan Source" characters);
- lone surrogates U+D800-U+DFFF (a file name decoded with ``surrogateescape``): they
  cannot be written as UTF-8, and a log handler would drop the whole record;
- U+FFFE and U+FFFF, the two remaining characters XML 1.0 forbids.

Everything else stays as it is, so that ``Zürich`` and ``山田^太郎`` read as they should,
and so do the invisible bidi *marks* (LRM, RLM, ALM): right-to-left names use them, and
they cannot reorder text beyond their neighbours. The backslash itself is not escaped:
it separates DICOM values (``ORIGINAL\\PRIMARY``), and leaving it keeps :func:`printable`
idempotent, so text escaped twice (by a module and again by a log handler) reads the
same. The escaping is for safety, not a reversible encoding: a peer may send a literal
``\\n``, and it shows exactly like an escaped newline, which forges nothing.

Consequences the callers rely on: the result is one line (``str.splitlines`` finds no
break in it), holds no terminal control sequence, encodes as UTF-8, and every character
of it is allowed in XML 1.0.
"""

from __future__ import annotations

import re

__all__ = ["NAME_MAX", "clipped", "printable", "printable_lines"]

NAME_MAX = 1024
"""Characters of a name a peer chose (a certificate subject) that a log line or an audit
record quotes: real ones are far shorter, and a certificate may hold 100 kB of name."""

# Everything escaped besides the C0 controls: DEL, C1, line/paragraph separators, bidi
# embeddings/overrides/isolates, surrogates, and the two characters XML cannot carry.
_BEYOND_C0 = "\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069\ud800-\udfff\ufffe\uffff"
_UNSAFE_CHARACTER = re.compile(f"[\x00-\x1f{_BEYOND_C0}]")
_UNSAFE_BUT_NEWLINE = re.compile(f"[\x00-\x09\x0b-\x1f{_BEYOND_C0}]")
_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _escape(match: re.Match[str]) -> str:
    character = match.group()
    named = _NAMED.get(character)
    if named is not None:
        return named
    code = ord(character)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def printable(text: str) -> str:
    """``text`` as one line that is safe to log, print or put in XML (rules above).

    Costs one regular-expression scan when there is nothing to escape, and returns
    ``text`` itself then.
    """
    if _UNSAFE_CHARACTER.search(text) is None:
        return text
    return _UNSAFE_CHARACTER.sub(_escape, text)


def clipped(text: str, limit: int = NAME_MAX) -> str:
    """``text`` up to ``limit`` characters, then how many more there were."""
    if len(text) <= limit:
        return text
    return f"{text[:limit]}... ({len(text) - limit:,} more characters)"


def printable_lines(text: str) -> str:
    """Like :func:`printable` but keeping line feeds, for text that is several lines on
    purpose (a traceback's frames). Each line feed left still starts a line: use it only
    where every line feed is ours, and :func:`printable` on anything a peer wrote."""
    if _UNSAFE_BUT_NEWLINE.search(text) is None:
        return text
    return _UNSAFE_BUT_NEWLINE.sub(_escape, text)
