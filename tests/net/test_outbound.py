"""What an SCU proposes for a set of files: each file's own syntax, and native fallbacks apart."""

from __future__ import annotations

from pathlib import Path

from dicomtls.dimse.part10 import Part10Header
from dicomtls.dimse.transfer_syntax import EXPLICIT_VR_LE, IMPLICIT_VR_LE, RLE
from dicomtls.net.outbound import MAX_CONTEXTS, proposals_for_headers
from dicomtls.ul.acse import Proposal

CT, MR = "1.2.840.10008.5.1.4.1.1.2", "1.2.840.10008.5.1.4.1.1.4"
JPEG_LS = "1.2.840.10008.1.2.4.80"


def _header(sop_class: str, syntax: str) -> Part10Header:
    return Part10Header(Path("x.dcm"), sop_class, "1.2.3", syntax, 132, 0)


def _storage(proposals: list[Proposal]) -> list[tuple[str, tuple[str, ...]]]:
    return [(p.abstract_syntax, p.transfer_syntaxes) for p in proposals[1:]]


def test_each_native_fallback_has_a_context_of_its_own() -> None:
    """A peer that takes both gets a converted object in Explicit VR, with its VRs; from a
    shared context it would pick one, often Implicit."""
    proposals = proposals_for_headers([_header(MR, RLE), _header(MR, JPEG_LS), _header(MR, RLE)])
    assert proposals[0].abstract_syntax == "1.2.840.10008.1.1"
    assert _storage(proposals) == [
        (MR, (RLE,)),
        (MR, (JPEG_LS,)),
        (MR, (EXPLICIT_VR_LE,)),
        (MR, (IMPLICIT_VR_LE,)),
    ]


def test_a_native_syntax_the_files_are_in_is_not_proposed_twice() -> None:
    proposals = proposals_for_headers([_header(CT, EXPLICIT_VR_LE), _header(CT, RLE)])
    assert sorted(_storage(proposals)) == sorted(
        [(CT, (EXPLICIT_VR_LE,)), (CT, (RLE,)), (CT, (IMPLICIT_VR_LE,))]
    )


def test_past_128_contexts_the_fallbacks_share_one_context_then_go() -> None:
    classes = [f"1.2.840.10008.5.1.4.1.1.{n}" for n in range(50)]
    shared = proposals_for_headers([_header(sop, RLE) for sop in classes])  # 1 + 50 * 3 > 128
    assert len(shared) == 1 + 50 * 2
    assert (classes[0], (EXPLICIT_VR_LE, IMPLICIT_VR_LE)) in _storage(shared)

    more = [f"1.2.840.10008.5.1.4.1.1.{n}" for n in range(70)]
    exact = proposals_for_headers([_header(sop, RLE) for sop in more])  # 1 + 70 * 2 > 128
    assert len(exact) == 71 <= MAX_CONTEXTS
    assert all(p.transfer_syntaxes == (RLE,) for p in exact[1:])
