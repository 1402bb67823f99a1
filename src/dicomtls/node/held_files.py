"""What a store folder holds under a SOP Instance UID, read from the file there.

A store without an index (``dicomtls get --out``, a folder given to
:class:`~dicomtls.node.store_scp.DurableStoreHandler`) names each object by the UID its
sender chose, so a sender can send another object under the UID of a file already there:
an earlier retrieval, another patient's. The handler replaces a held object only with the
same object (:data:`~dicomtls.node.store_scp.IDENTITY`), the way the node does with its
index; here the file itself says what it holds.

The file is read by the scanner that checked the object as it arrived
(:class:`~dicomtls.dimse.dataset_scan.DatasetScanner`), not by pydicom: the values compare
exactly as the received copy's do, and the file may be a sender's too, one whose sequences
of a million items pydicom would take a minute and a gigabyte to build. The scan stops
once past the attributes asked for, so the pixel data is never read.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from dicomtls.dimse.dataset_scan import DatasetScanError, DatasetScanner, keyword_tag
from dicomtls.dimse.part10 import Part10Error, iter_blocks, read_header
from dicomtls.node.storage import DurableStore

__all__ = ["file_identity", "files_held"]

_SPECIFIC_CHARACTER_SET = 0x00080005  # how to read the text values
_BLOCK = 64 << 10


def files_held(
    store: DurableStore,
) -> Callable[[str, Sequence[str]], Mapping[str, str] | None]:
    """An identity lookup (``DurableStoreHandler(identity_of=...)``) reading ``store``'s files."""

    def identity_of(sop_instance_uid: str, keywords: Sequence[str]) -> Mapping[str, str] | None:
        return file_identity(store.path_for(sop_instance_uid), keywords)

    return identity_of


def file_identity(path: Path, keywords: Sequence[str]) -> Mapping[str, str] | None:
    """The values of ``keywords`` (top-level attributes) in the object at ``path``; None when
    nothing is there.

    Something there that is not a readable DICOM file (the user's own file, a folder, a
    FIFO, which is never opened to wait on) holds none of them: empty, so no object
    received, whose SOP Class UID the SCP has checked to be there, counts as the same.
    """
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:  # a dangling link too: replacing it replaces the link alone
        return None
    except OSError:
        return {}
    if not stat.S_ISREG(mode):
        return {}
    tags = {keyword_tag(keyword) for keyword in keywords}
    try:
        header = read_header(path)
        scanner = DatasetScanner(header.transfer_syntax_uid, tags | {_SPECIFIC_CHARACTER_SET})
        for block in iter_blocks(header, _BLOCK):
            scanner.feed(block)
            if scanner.top_level_tag > max(tags):
                break
        return scanner.kept_so_far().texts(keywords)
    except (Part10Error, DatasetScanError, OSError):
        return {}
