"""Sending a stored object: which accepted context carries it, in which syntax, from where.

Negotiation gives each presentation context one transfer syntax (PS3.8 7.1.1.14). A file
goes out as it is, streamed block by block from disk, on a context that accepted its
own syntax. Failing that, on a context that accepted a syntax we can convert it to
(:mod:`dicomtls.dimse.transcode`); failing that, it is not sent, with the reason. The
same choice serves an SCU's C-STORE, a C-MOVE's sub-association and a C-GET's
sub-operations; only the role the sender needs on the context differs. Converting reads
and writes the whole object, seconds for one of many elements (a peer's choice, if a peer
stored it), so it runs on a worker thread: on the event loop every association waited.

:func:`proposals_for_headers` is the other side of the same coin: what to propose so
that every file finds its own syntax accepted, with native fallbacks.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass

from dicomtls.dimse.part10 import Part10Header, iter_blocks
from dicomtls.dimse.sop_classes import VERIFICATION
from dicomtls.dimse.transcode import TARGETS, TranscodeError, transcode
from dicomtls.dimse.transfer_syntax import IMPLICIT_VR_LE, UNCOMPRESSED, syntax_name
from dicomtls.errors import DicomTLSError
from dicomtls.ul.acse import AcceptedContext, Negotiated, Proposal

__all__ = ["NoWayToSend", "Outgoing", "outgoing", "proposals_for_headers"]

#: PS3.8 9.3.2: an association has at most 128 presentation contexts.
MAX_CONTEXTS = 128


class NoWayToSend(DicomTLSError, ValueError):
    """No accepted context can carry this object; the text says what was accepted and why."""


@dataclass(frozen=True)
class Outgoing:
    """An object ready to send: the context, and its data set in that context's syntax."""

    context: AcceptedContext
    blocks: Iterable[bytes | memoryview]
    converted: bool


async def outgoing(
    header: Part10Header, negotiated: Negotiated, *, as_scp: bool, block_size: int
) -> Outgoing:
    """How to send ``header``'s file: as it is, or converted; NoWayToSend if neither works.

    ``as_scp``: we send C-STOREs as the SCP of the association's requestor (C-GET), so a
    context must have given the requestor the SCP role; otherwise we are the requestor
    and need the SCU role.
    """
    usable = [
        c
        for c in negotiated.contexts
        if c.abstract_syntax == header.sop_class_uid and (c.scp_role if as_scp else c.scu_role)
    ]
    if not usable:
        raise NoWayToSend(f"no accepted presentation context for SOP class {header.sop_class_uid}")
    for context in usable:
        if context.transfer_syntax == header.transfer_syntax_uid:
            return Outgoing(context, iter_blocks(header, block_size), converted=False)
    return await asyncio.to_thread(_converted, header, usable)


def _converted(header: Part10Header, usable: list[AcceptedContext]) -> Outgoing:
    """The object converted to a syntax one of the ``usable`` contexts accepted, the first
    of :data:`~dicomtls.dimse.transcode.TARGETS` that one did."""
    syntax = syntax_name(header.transfer_syntax_uid)
    targets = [c for target in TARGETS for c in usable if c.transfer_syntax == target]
    accepted = ", ".join(sorted({syntax_name(c.transfer_syntax) for c in usable}))
    if not targets:
        raise NoWayToSend(
            f"{syntax} not accepted, nor a syntax we convert to (accepted: {accepted})"
        )
    try:
        data = transcode(header, targets[0].transfer_syntax)
    except TranscodeError as exc:
        raise NoWayToSend(f"{syntax} not accepted ({accepted}): {exc}") from None
    return Outgoing(targets[0], (data,), converted=True)


def proposals_for_headers(headers: Iterable[Part10Header]) -> list[Proposal]:
    """Verification, then for each SOP class one context per transfer syntax its files
    are in, and one per native syntax they are not in, as fallbacks.

    One syntax per context, because a peer accepts one syntax per context: an RLE file
    and an uncompressed one of the same class need two. The fallbacks let a peer that
    refuses a compressed syntax still take the object, converted; apart, a peer accepts
    both Explicit and Implicit VR Little Endian, and a converted object goes out with its
    VRs (Explicit) rather than in the syntax the peer would pick from a shared context,
    often Implicit, whose reader has to guess the VR of every private element. Within
    the 128 contexts of an association the fallbacks share one context per class, then
    go, then each class's syntaxes share one context (the peer picks one, the others
    are converted where we can).
    """
    needed: dict[str, Counter[str]] = {}
    for header in headers:
        needed.setdefault(header.sop_class_uid, Counter())[header.transfer_syntax_uid] += 1
    classes = sorted(needed.items())
    verification = [Proposal(VERIFICATION, (IMPLICIT_VR_LE,))]
    for layout in (_natives_apart, _natives_shared, _exact):
        proposals = verification + [p for sop, counts in classes for p in layout(sop, counts)]
        if len(proposals) <= MAX_CONTEXTS:
            return proposals
    return verification + [_one_context(sop, counts) for sop, counts in classes][: MAX_CONTEXTS - 1]


def _exact(sop: str, counts: Counter[str]) -> list[Proposal]:
    """A context per syntax the class's files are in, the most common first."""
    return [Proposal(sop, (syntax,)) for syntax, _ in counts.most_common()]


def _natives_missing(counts: Counter[str]) -> tuple[str, ...]:
    return tuple(s for s in UNCOMPRESSED if s not in counts)


def _natives_apart(sop: str, counts: Counter[str]) -> list[Proposal]:
    """The exact contexts, then one per native syntax the files are not in."""
    return _exact(sop, counts) + [Proposal(sop, (s,)) for s in _natives_missing(counts)]


def _natives_shared(sop: str, counts: Counter[str]) -> list[Proposal]:
    """The exact contexts, then one for all the native syntaxes the files are not in."""
    missing = _natives_missing(counts)
    return _exact(sop, counts) + ([Proposal(sop, missing)] if missing else [])


def _one_context(sop: str, counts: Counter[str]) -> Proposal:
    """Every syntax of a class in one context, the most common first, natives after."""
    syntaxes = [s for s, _ in counts.most_common()]
    return Proposal(sop, (*syntaxes, *(s for s in UNCOMPRESSED if s not in syntaxes)))
