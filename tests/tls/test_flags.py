"""The verification flags: the seed's values, its legal combinations, and their meaning per side."""

import itertools

import pytest
from OpenSSL import SSL

from dicomtls.tls.flags import Side, VerifyFlags, parse_verify_flags, validate_verify_flags


def test_values_are_the_seeds_and_openssls() -> None:
    assert (VerifyFlags.NONE, VerifyFlags.PEER) == (0x00, 0x01)
    assert (VerifyFlags.FAIL_IF_NO_PEER_CERT, VerifyFlags.CLIENT_ONCE) == (0x02, 0x04)
    assert VerifyFlags.PEER == SSL.VERIFY_PEER
    assert VerifyFlags.FAIL_IF_NO_PEER_CERT == SSL.VERIFY_FAIL_IF_NO_PEER_CERT
    assert VerifyFlags.CLIENT_ONCE == SSL.VERIFY_CLIENT_ONCE


LEGAL = {
    VerifyFlags.NONE,
    VerifyFlags.PEER,
    VerifyFlags.PEER | VerifyFlags.FAIL_IF_NO_PEER_CERT,
    VerifyFlags.PEER | VerifyFlags.CLIENT_ONCE,
    VerifyFlags.PEER | VerifyFlags.FAIL_IF_NO_PEER_CERT | VerifyFlags.CLIENT_ONCE,
}


@pytest.mark.parametrize("value", range(8))
def test_every_combination_is_either_legal_or_refused(value: int) -> None:
    flags = VerifyFlags(value)
    if flags in LEGAL:
        assert validate_verify_flags(flags) == flags
    else:
        with pytest.raises(ValueError, match="must be combined with PEER"):
            validate_verify_flags(flags)


def test_unknown_bits_and_wrong_types_are_refused() -> None:
    with pytest.raises(ValueError, match="unknown bits"):
        validate_verify_flags(0x08 | 0x01)
    with pytest.raises(TypeError):
        validate_verify_flags("peer")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        validate_verify_flags(True)


def test_client_mode_ignores_the_server_only_flags() -> None:
    everything = VerifyFlags.PEER | VerifyFlags.FAIL_IF_NO_PEER_CERT | VerifyFlags.CLIENT_ONCE
    assert everything.for_side(Side.CLIENT) == VerifyFlags.PEER
    assert everything.for_side(Side.SERVER) == everything
    assert VerifyFlags.NONE.for_side(Side.CLIENT) == VerifyFlags.NONE


def test_descriptions_follow_the_seeds_table() -> None:
    assert "does NOT end" in VerifyFlags.NONE.describe(Side.CLIENT)
    assert VerifyFlags.NONE.describe(Side.SERVER) == "no client certificate is requested"
    assert "required" in (VerifyFlags.PEER | VerifyFlags.FAIL_IF_NO_PEER_CERT).describe(Side.SERVER)
    assert "if one is sent" in VerifyFlags.PEER.describe(Side.SERVER)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("none", VerifyFlags.NONE),
        ("peer", VerifyFlags.PEER),
        ("peer,fail-if-no-peer-cert", VerifyFlags.PEER | VerifyFlags.FAIL_IF_NO_PEER_CERT),
        (" Peer , client-once ", VerifyFlags.PEER | VerifyFlags.CLIENT_ONCE),
    ],
)
def test_parse_cli_spelling(text: str, expected: VerifyFlags) -> None:
    flags = parse_verify_flags(text)
    assert flags == expected
    assert parse_verify_flags(flags.label) == flags


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("none,peer", "cannot be combined"),
        ("client-once", "must be combined with PEER"),
        ("peer,strict", "unknown verify flag 'strict'"),
        ("", "empty"),
    ],
)
def test_parse_errors_say_what_is_wrong(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_verify_flags(text)


def test_labels_round_trip_for_all_legal_combinations() -> None:
    for flags in LEGAL:
        assert parse_verify_flags(flags.label) == flags
    assert len(set(itertools.chain(f.label for f in LEGAL))) == len(LEGAL)
