"""The UID check of PS3.5 9.1: every rule, the edges that pass, and what a hostile peer tries."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dicomtls.dimse.command import Tag, decode_command, encode_command
from dicomtls.dimse.messages import c_store_rq
from dicomtls.dimse.uids import MAX_UID_LENGTH, is_valid_uid, uid_problem

CT = "1.2.840.10008.5.1.4.1.1.2"
SIXTY_FOUR = "1.2.826.0.1.3680043.10.543." + "1" * 37  # exactly 64 characters


@pytest.mark.parametrize(
    "uid",
    [
        CT,
        "0",  # a component may be exactly "0"
        "0.0",
        "1.0.2",
        "2.25.329800735698586629295641978511506172918",  # a UUID-derived UID (PS3.5 B.2)
        "9",  # one component: 9.1 sets no minimum count
        SIXTY_FOUR,
    ],
)
def test_valid_uids(uid: str) -> None:
    assert is_valid_uid(uid)
    assert uid_problem(uid) is None


@pytest.mark.parametrize(
    ("uid", "why"),
    [
        (CT + "\n", "not all digits"),  # "$" matches before it: the finding of issue 13
        ("\n" + CT, "not all digits"),
        (CT + "\r\n", "not all digits"),
        (".", "component 1 is empty"),
        ("..", "component 1 is empty"),
        ("", "empty"),
        ("1.", "component 2 is empty"),
        (".1", "component 1 is empty"),
        ("1..2", "component 2 is empty"),
        ("01", "leading zero"),
        ("1.2.03", "component 3 has a leading zero"),
        ("00", "leading zero"),
        (SIXTY_FOUR + "1", "65 characters"),
        ("1." * 40 + "1", "81 characters"),
        (CT + " ", "not all digits"),  # padding is the decoder's to strip, not ours to accept
        (CT + "\0", "not all digits"),
        ("1.2/../3", "not all digits"),
        ("../../etc/passwd", "component 1 is empty"),
        ("1.2.\u0661\u0662", "not all digits"),  # Arabic-Indic digits match \d, not [0-9]
        ("+1.2", "not all digits"),
        ("1e5", "not all digits"),
        ("1.2.3\x1b[2J", "not all digits"),
    ],
)
def test_invalid_uids_say_which_rule_they_break(uid: str, why: str) -> None:
    assert not is_valid_uid(uid)
    problem = uid_problem(uid)
    assert problem is not None and why in problem, problem


_components = st.one_of(st.just("0"), st.from_regex(r"[1-9][0-9]{0,8}", fullmatch=True))


@given(st.lists(_components, min_size=1, max_size=12))
def test_any_well_formed_uid_up_to_64_characters_is_valid(components: list[str]) -> None:
    uid = ".".join(components)
    assert is_valid_uid(uid) == (len(uid) <= MAX_UID_LENGTH)


@given(st.lists(_components, min_size=1, max_size=6), st.sampled_from(["\n", " ", ".", "..", "/"]))
def test_nothing_appended_to_a_uid_is_still_valid(components: list[str], tail: str) -> None:
    assert not is_valid_uid(".".join(components) + tail)


def test_the_command_decoder_strips_the_padding_but_not_a_newline() -> None:
    """The C-STORE-RQ's UIDs reach the gate as the decoder leaves them: the NUL that pads an
    odd-length UI value is gone, a newline the peer put inside the value stays."""
    padded = decode_command(encode_command(c_store_rq(1, CT, "1.2.345")))  # 7 chars: NUL-padded
    assert padded[Tag.AffectedSOPInstanceUID] == "1.2.345"
    assert is_valid_uid(str(padded[Tag.AffectedSOPInstanceUID]))
    forged = decode_command(encode_command(c_store_rq(1, CT, "1.2.34\n")))
    assert forged[Tag.AffectedSOPInstanceUID] == "1.2.34\n"
    assert not is_valid_uid(str(forged[Tag.AffectedSOPInstanceUID]))
