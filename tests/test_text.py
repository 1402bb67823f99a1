"""printable(): what a peer chose, safe to log, print and put in XML, and still readable."""

from __future__ import annotations

import re
import unicodedata

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from dicomtls.text import printable, printable_lines

FORGED = "\n2026-01-01 00:00:00 WARNING dicomtls.net: FORGED\x1b[2J"
#: XML 1.0's Char production (section 2.2).
XML_CHAR = re.compile("[\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]*")
#: Where a terminal, a log reader or str.splitlines sees a line end or a control sequence.
TERMINAL_OR_BREAK = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")
BIDI_OVERRIDES = "\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069"
#: Any text, surrogates included, with the characters that matter drawn often.
TEXTS = st.text(
    st.one_of(
        st.characters(exclude_categories=()),
        st.sampled_from("\n\r\t\x1b\x85\x9b\u2028\u2029\ufffe\uffff\udc80\\" + BIDI_OVERRIDES),
    )
)


@pytest.mark.parametrize(
    ("raw", "shown"),
    [
        ("1.2.840.10008.1.1", "1.2.840.10008.1.1"),
        (FORGED, "\\n2026-01-01 00:00:00 WARNING dicomtls.net: FORGED\\x1b[2J"),
        ("a\r\nb\tc", "a\\r\\nb\\tc"),
        ("\x00\x07\x7f", "\\x00\\x07\\x7f"),
        ("NEL\x85 CSI\x9b2J", "NEL\\x85 CSI\\x9b2J"),
        ("one\u2028two\u2029", "one\\u2028two\\u2029"),
        ("abc\u202edcba", "abc\\u202edcba"),
        ("\u2066isolated\u2069", "\\u2066isolated\\u2069"),
        ("lone \udcff surrogate", "lone \\udcff surrogate"),
        ("\ufffe\uffff", "\\ufffe\\uffff"),
    ],
)
def test_escapes_what_a_reader_or_terminal_would_act_on(raw: str, shown: str) -> None:
    assert printable(raw) == shown


@pytest.mark.parametrize(
    "ordinary",
    [
        "Zürich",
        "Müller^Jörg",
        "山田^太郎=やまだ^たろう",
        "\u05e9\u05dc\u05d5\u05dd\u200f",  # Hebrew and a right-to-left mark, not an override
        "ORIGINAL\\PRIMARY",  # the DICOM value separator
        "CN = [red]node[/red]",  # markup is the console's business (cli.render.shown)
        "emoji \U0001f600 and NBSP\u00a0",
    ],
)
def test_leaves_ordinary_text_as_it_is(ordinary: str) -> None:
    assert printable(ordinary) is ordinary


@given(TEXTS)
@example(FORGED)
@example("\udc80\x85\u2028\u202e\ufffe")
def test_result_is_one_safe_line_whatever_the_input(text: str) -> None:
    shown = printable(text)
    assert len(shown.splitlines()) <= 1
    assert TERMINAL_OR_BREAK.search(shown) is None
    assert not any(c in shown for c in BIDI_OVERRIDES)
    assert XML_CHAR.fullmatch(shown)
    shown.encode("utf-8")  # no lone surrogate left
    assert printable(shown) == shown  # escaping twice changes nothing


def _escaped(character: str) -> bool:
    """The rule, written from the characters' code points rather than the module's regex."""
    code = ord(character)
    return (
        code < 0x20
        or 0x7F <= code <= 0x9F
        or code in (0x2028, 0x2029, 0xFFFE, 0xFFFF)
        or 0x202A <= code <= 0x202E
        or 0x2066 <= code <= 0x2069
        or unicodedata.category(character) == "Cs"
    )


@given(TEXTS)
@example("tab\there \u00e9\u202e\udc80")
def test_escapes_exactly_the_rule_and_as_python_writes_them(text: str) -> None:
    """Each escaped character reads as in Python's repr; every other one comes through."""
    expected = "".join(repr(c)[1:-1] if _escaped(c) else c for c in text)
    assert printable(text) == expected


def test_printable_lines_keeps_line_feeds_only() -> None:
    text = 'Traceback (most recent call last):\n  File "x.py"\nValueError: uid\x1b[2J\r\u202e'
    assert printable_lines(text) == (
        'Traceback (most recent call last):\n  File "x.py"\nValueError: uid\\x1b[2J\\r\\u202e'
    )
    assert printable_lines("no escapes\nneeded") == "no escapes\nneeded"
