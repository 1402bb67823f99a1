"""dicomtls.buffers: a pooled buffer is handed out again only once no view of it is left."""

from __future__ import annotations

import threading

from cryptography.hazmat.bindings.openssl.binding import Binding

from dicomtls.buffers import BufferPool, viewed

KIB = 1 << 10


def test_every_kind_of_view_counts_and_a_free_buffer_keeps_its_bytes() -> None:
    buffer = bytearray(b"abcdef")
    assert not viewed(buffer)
    assert buffer == b"abcdef"  # the check shrinks and regrows it, leaving it as it was
    whole = memoryview(buffer)
    part = whole[2:4]
    del whole
    assert viewed(buffer)  # a slice outlives the view it was cut from
    read_only = memoryview(buffer).toreadonly()[1:]
    del part
    assert viewed(buffer)
    read_only.release()
    assert not viewed(buffer)
    cdata = Binding.ffi.from_buffer(buffer)  # what the TLS engine hands OpenSSL
    assert viewed(buffer)
    del cdata
    assert not viewed(buffer)
    assert not viewed(bytearray())


def test_a_buffer_comes_back_only_once_its_views_are_gone() -> None:
    pool = BufferPool(smallest=KIB, largest=64 * KIB, budget=256 * KIB)
    first = pool.take(4 * KIB)
    view = memoryview(first)[:10]
    pool.give_back(first)
    second = pool.take(4 * KIB)
    assert second is not first  # still viewed
    del view
    assert pool.take(4 * KIB) is first
    assert pool.take(4 * KIB) is not first  # taken: no longer kept


def test_only_buffers_of_the_size_asked_for_and_within_bounds_are_kept() -> None:
    pool = BufferPool(smallest=KIB, largest=64 * KIB, budget=256 * KIB)
    small, large, middle = bytearray(KIB - 1), bytearray(64 * KIB + 1), bytearray(8 * KIB)
    for buffer in (small, large, middle, middle):
        pool.give_back(buffer)
    assert pool.take(KIB - 1) is not small
    assert pool.take(64 * KIB + 1) is not large
    assert pool.take(4 * KIB) is not middle
    assert pool.take(8 * KIB) is middle
    assert pool.take(8 * KIB) is not middle  # given back twice, kept once


def test_the_budget_drops_the_oldest() -> None:
    pool = BufferPool(smallest=KIB, largest=64 * KIB, budget=128 * KIB)
    buffers = [bytearray(64 * KIB) for _ in range(3)]
    for buffer in buffers:
        pool.give_back(buffer)
    taken = {id(pool.take(64 * KIB)) for _ in range(3)}
    assert id(buffers[0]) not in taken
    assert {id(buffers[1]), id(buffers[2])} <= taken


def test_each_thread_has_its_own_buffers() -> None:
    pool = BufferPool(smallest=KIB, largest=64 * KIB, budget=256 * KIB)
    mine = bytearray(4 * KIB)
    pool.give_back(mine)
    elsewhere: list[bytearray] = []
    thread = threading.Thread(target=lambda: elsewhere.append(pool.take(4 * KIB)))
    thread.start()
    thread.join()
    assert elsewhere[0] is not mine
    assert pool.take(4 * KIB) is mine
