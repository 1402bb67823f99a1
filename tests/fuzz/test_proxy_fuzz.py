"""The PROXY v2 header parser under damaged input: bit flips, truncations, tampered lengths,
whole or cut anywhere. It answers "need more", a header no longer than its bound, or
ProxyHeaderError; never another exception, never a header past the bytes it was given."""

from __future__ import annotations

from hypothesis import example, given, settings
from hypothesis import strategies as st

from dicomtls.net.proxy import MAX_HEADER, SIGNATURE, ProxyHeaderError, encode_header, parse_header

ipv4 = st.tuples(
    st.integers(0, 255), st.integers(0, 255), st.integers(0, 255), st.integers(0, 255)
).map(lambda t: ".".join(map(str, t)))
ipv6 = st.binary(min_size=16, max_size=16).map(
    lambda b: ":".join(b[i : i + 2].hex() for i in range(0, 16, 2))
)
ports = st.integers(0, 65535)
valid = st.one_of(
    st.just(encode_header(None)),
    st.builds(
        lambda a, p, t: encode_header((a, p), ("127.0.0.1", 2762), t),
        ipv4,
        ports,
        st.binary(max_size=64),
    ),
    st.builds(lambda a, p: encode_header((a, p), ("::1", 2762)), ipv6, ports),
)


def _check(data: bytes, limit: int = MAX_HEADER) -> None:
    try:
        header = parse_header(data, limit)
    except ProxyHeaderError as exc:
        assert "\n" not in str(exc)
        return
    if header is not None:
        assert 16 <= header.length <= min(len(data), limit)
        assert header.local or header.source is not None


@settings(max_examples=300, deadline=None)
@given(valid, st.data())
@example(encode_header(("10.1.2.3", 4000)), None)
def test_mutated_headers_parse_need_more_or_raise(
    header: bytes, data: st.DataObject | None
) -> None:
    if data is None:
        _check(header)
        return
    mutated = bytearray(header + b"\x16\x03\x01")  # a ClientHello's first bytes follow
    for _ in range(data.draw(st.integers(0, 4))):
        position = data.draw(st.integers(0, len(mutated) - 1))
        mutated[position] = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(0, len(mutated)))
    _check(bytes(mutated[:cut]))


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=700), st.integers(16, 2000))
def test_arbitrary_bytes_after_the_signature(tail: bytes, limit: int) -> None:
    _check(SIGNATURE + tail, limit)


@settings(max_examples=100, deadline=None)
@given(st.integers(0, 65535))
def test_a_declared_length_over_the_bound_is_refused_before_it_arrives(length: int) -> None:
    data = SIGNATURE + bytes([0x21, 0x11]) + length.to_bytes(2, "big")
    try:
        header = parse_header(data)
    except ProxyHeaderError:
        assert 16 + length > MAX_HEADER or length < 12
        return
    assert header is None and 16 + length <= MAX_HEADER  # waits only for what it will take
