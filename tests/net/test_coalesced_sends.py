"""Small messages written in one turn of the event loop leave in one send (the answers to
several C-STOREs committed together), in order and whole; a large one, or enough small ones,
still goes at once, so nothing piles up unsent."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from dicomtls.net import link as link_module
from dicomtls.net.link import SecureLink, connect, serve
from dicomtls.tls.flags import VerifyFlags

from ..conftest import MatrixPKI

PEER_FAIL = VerifyFlags.PEER | VerifyFlags.FAIL_IF_NO_PEER_CERT


def _count_sends(link: SecureLink) -> list[int]:
    """The sizes of what ``link`` hands its transport, one entry per write."""
    sends: list[int] = []
    transport: Any = link._protocol._transport
    write: Callable[[Any], None] = transport.write

    def counted(data: Any) -> None:
        sends.append(len(data))
        write(data)

    transport.write = counted
    return sends


async def _exchange(
    pki: MatrixPKI, messages: list[bytes], check: Callable[[list[int]], None]
) -> bytes:
    """The server writes ``messages`` in one turn; ``check`` sees its sends right after the
    writes and once the turn is over; returns what the client read."""

    async def handler(link: SecureLink) -> None:
        sends = _count_sends(link)
        for message in messages:
            link.write(message)
        check(sends)  # still in the turn that wrote them
        await asyncio.sleep(0)
        check(sends)
        await link.drain()
        await link.read()  # until the client is done

    return await _received(pki, handler, sum(map(len, messages)))


async def _received(pki: MatrixPKI, handler: Callable[[SecureLink], Any], size: int) -> bytes:
    server = await serve(handler, "127.0.0.1", 0, pki.settings("server", PEER_FAIL))
    async with server:
        client = await connect("127.0.0.1", server.port, pki.settings("client", PEER_FAIL))
        got = bytearray()
        async with asyncio.timeout(30):
            while len(got) < size:
                got += await client.read()
        await client.close()
    return bytes(got)


def test_small_messages_of_one_turn_leave_in_one_send(matrix_pki: MatrixPKI) -> None:
    messages = [bytes([i]) * (150 + i) for i in range(16)]  # sixteen C-STORE-RSPs, say
    seen: list[list[int]] = []
    got = asyncio.run(_exchange(matrix_pki, messages, lambda sends: seen.append(list(sends))))
    assert got == b"".join(messages)
    during, after = seen
    assert during == [] and len(after) == 1  # nothing during the turn, then one send


def test_a_large_message_or_many_small_ones_go_at_once(matrix_pki: MatrixPKI) -> None:
    small = [bytes([i]) * 1000 for i in range(100)]  # more than the cork holds, in one turn
    large = [b"L" * (link_module._CORK_LIMIT + 1)]
    for messages in (small, large):
        seen: list[list[int]] = []

        def check(sends: list[int], seen: list[list[int]] = seen) -> None:
            seen.append(list(sends))

        got = asyncio.run(_exchange(matrix_pki, messages, check))
        assert got == b"".join(messages)
        during, _ = seen
        sent_during = sum(during)
        assert sent_during > 0  # went before the turn ended
        unsent = sum(map(len, messages)) - sent_during  # roughly: ciphertext is a little more
        assert unsent < link_module._CORK_LIMIT
