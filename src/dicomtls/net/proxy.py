"""The PROXY protocol, version 2: who the client is when a balancer stands in between.

A TCP balancer in passthrough (HAProxy ``mode tcp``, ``send-proxy-v2``) keeps TLS end to end,
so the node still verifies the client's certificate itself, but the connection comes from
the balancer's address. The balancer puts a binary header before the client's first byte
(haproxy.org, "The PROXY protocol", section 2.2): a 12-byte signature, version and command,
address family and transport, a length, the addresses, then optional TLVs.

This module only parses (sans-I/O, like ``ul/``): :func:`parse_header` takes the bytes that
arrived so far and says "need more", "here is the header", or raises
:class:`ProxyHeaderError`. The link (:mod:`dicomtls.net.link`) reads the header before the
TLS ClientHello, from trusted proxies only, within a deadline and a size bound.

Refused here: version 1 (text; ask for ``send-proxy-v2``), unknown versions and commands, a
PROXY command without a TCP source over IPv4 or IPv6 (UNSPEC, UNIX or UDP: the node would
have no client address to judge, so it does not fall back to the balancer's), and headers
longer than :data:`MAX_HEADER` (TLVs are skipped, never kept).
"""

from __future__ import annotations

import ipaddress
import struct
from collections.abc import Iterable
from dataclasses import dataclass

from dicomtls.errors import DicomTLSError

__all__ = [
    "MAX_HEADER",
    "SIGNATURE",
    "ProxyHeader",
    "ProxyHeaderError",
    "ProxyProtocol",
    "encode_header",
    "parse_header",
]

SIGNATURE = b"\r\n\r\n\x00\r\nQUIT\n"
_FIXED = struct.Struct("!12sBBH")  # signature, version|command, family|transport, length
#: The longest header accepted: the fixed part, IPv6 addresses and a few TLVs (HAProxy's
#: unique-id or authority fit). A longer one is refused, never buffered.
MAX_HEADER = 16 + 36 + 512
_LOCAL, _PROXY = 0x0, 0x1
_INET, _INET6 = 0x1, 0x2
_STREAM = 0x1
_ADDRESSES = {_INET: struct.Struct("!4s4sHH"), _INET6: struct.Struct("!16s16sHH")}


class ProxyHeaderError(DicomTLSError, ValueError):
    """Bytes that are not an acceptable PROXY v2 header; the text says what is wrong."""


@dataclass(frozen=True)
class ProxyHeader:
    local: bool
    """LOCAL: the proxy speaks for itself (a health check): no client, close quietly."""
    source: tuple[str, int] | None
    """The client's address and port (PROXY command)."""
    destination: tuple[str, int] | None
    length: int
    """Bytes the header took: what follows is the client's own (its TLS ClientHello)."""

    @property
    def peer(self) -> str:
        """``host:port`` as the node names peers (``[v6]:port`` for IPv6)."""
        if self.source is None:
            return "?"
        host, port = self.source
        return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def parse_header(
    data: bytes | bytearray | memoryview, max_length: int = MAX_HEADER
) -> ProxyHeader | None:
    """The header at the start of ``data``; None while more bytes are needed."""
    view = bytes(data[: max(16, max_length)])
    _check_signature(view)
    if len(view) < _FIXED.size:
        return None
    command, family_transport, total = _fixed_part(view, max_length)
    if len(view) < total:
        return None
    if command == _LOCAL:
        return ProxyHeader(True, None, None, total)
    return _proxied(view, family_transport, total)


def _check_signature(view: bytes) -> None:
    """What has arrived must begin the v2 signature (a v1 header is named as such)."""
    start = view[: len(SIGNATURE)]
    if start == SIGNATURE[: len(start)]:
        return
    if b"PROXY "[: len(view[:6])] == view[:6]:
        raise ProxyHeaderError(
            "a PROXY protocol version 1 (text) header: configure the proxy with send-proxy-v2"
        )
    raise ProxyHeaderError(
        f"no PROXY protocol v2 signature (the connection starts with {view[:8]!r})"
    )


def _fixed_part(view: bytes, max_length: int) -> tuple[int, int, int]:
    """The command, the family and transport byte, and the header's whole length."""
    _, version_command, family_transport, length = _FIXED.unpack_from(view)
    version, command = version_command >> 4, version_command & 0xF
    if version != 2:
        raise ProxyHeaderError(f"PROXY protocol version {version}, not 2")
    if command not in (_LOCAL, _PROXY):
        raise ProxyHeaderError(f"unknown PROXY v2 command {command}")
    total = _FIXED.size + length
    if total > max_length:
        raise ProxyHeaderError(
            f"a PROXY v2 header of {total} bytes, over the limit of {max_length}"
        )
    return command, family_transport, total


def _proxied(view: bytes, family_transport: int, total: int) -> ProxyHeader:
    """A PROXY command's header: the client's TCP address over IPv4 or IPv6, and ours."""
    family, transport = family_transport >> 4, family_transport & 0xF
    layout = _ADDRESSES.get(family)
    if layout is None or transport != _STREAM:
        raise ProxyHeaderError(
            f"a PROXY v2 header without a TCP client address (family {family}, transport "
            f"{transport}): the node has no client to judge"
        )
    length = total - _FIXED.size
    if length < layout.size:
        raise ProxyHeaderError(f"a PROXY v2 header whose {length}-byte address block is too short")
    source, destination, source_port, destination_port = layout.unpack_from(view, _FIXED.size)
    client = str(ipaddress.ip_address(source)), source_port
    server = str(ipaddress.ip_address(destination)), destination_port
    return ProxyHeader(False, client, server, total)


def encode_header(
    source: tuple[str, int] | None, destination: tuple[str, int] | None = None, tlvs: bytes = b""
) -> bytes:
    """A PROXY v2 header (LOCAL when ``source`` is None): for tests and peers that stand in
    for a balancer."""
    if source is None:
        return _FIXED.pack(SIGNATURE, 0x20 | _LOCAL, 0, len(tlvs)) + tlvs
    client = ipaddress.ip_address(source[0])
    server = ipaddress.ip_address(
        (destination or ("0.0.0.0" if client.version == 4 else "::", 0))[0]
    )
    family = _INET if client.version == 4 else _INET6
    addresses = _ADDRESSES[family].pack(
        client.packed, server.packed, source[1], destination[1] if destination else 0
    )
    body = addresses + tlvs
    return _FIXED.pack(SIGNATURE, 0x20 | _PROXY, family << 4 | _STREAM, len(body)) + body


@dataclass(frozen=True)
class ProxyProtocol:
    """``proxy_protocol = true`` with ``trusted_proxies``: every connection must start with a
    PROXY v2 header, and only from one of these networks."""

    trusted: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]
    header_timeout: float = 5.0
    """A proxy sends its header at once; one that does not within this is closed."""
    max_header: int = MAX_HEADER

    @classmethod
    def from_config(cls, trusted: Iterable[str], header_timeout: float = 5.0) -> ProxyProtocol:
        networks = []
        for text in trusted:
            try:
                networks.append(ipaddress.ip_network(str(text).strip(), strict=True))
            except ValueError as exc:
                raise ValueError(
                    f"trusted_proxies: {text!r} is not a network (e.g. 10.0.0.5/32): {exc}"
                ) from None
        if not networks:
            raise ValueError(
                "proxy_protocol = true needs trusted_proxies, the balancers' networks "
                '(e.g. ["10.0.0.5/32"]): without it any client could claim any address'
            )
        return cls(tuple(networks), header_timeout)

    def trusts(self, host: str) -> bool:
        try:
            address = ipaddress.ip_address(host.split("%", 1)[0])
        except ValueError:
            return False
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            address = address.ipv4_mapped
        return any(address in network for network in self.trusted)

    def describe(self) -> str:
        return ", ".join(str(n) for n in self.trusted)
