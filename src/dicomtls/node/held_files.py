"""What a store folder holds under a SOP Instance UID, read from the file there.

A store without an index (``dicomtls get --out``, a folder given to
:class:`~dicomtls.node.store_scp.DurableStoreHandler`) names each object by the UID its
sender chose, so a sender can send another object under the UID of a file already there:
an earlier retrieval, another patient's. The handler replaces a held object only with the
same object (:data:`~dicomtls.node.store_scp.IDENTITY`), the way the node does with its
index; here the file itself says what it holds.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import pydicom
from pydicom.errors import InvalidDicomError

from dicomtls.dimse.datasets import keyword_texts
from dicomtls.node.storage import DurableStore

__all__ = ["file_identity", "files_held"]


def files_held(
    store: DurableStore,
) -> Callable[[str, Sequence[str]], Mapping[str, str] | None]:
    """An identity lookup (``DurableStoreHandler(identity_of=...)``) reading ``store``'s files."""

    def identity_of(sop_instance_uid: str, keywords: Sequence[str]) -> Mapping[str, str] | None:
        return file_identity(store.path_for(sop_instance_uid), keywords)

    return identity_of


def file_identity(path: Path, keywords: Sequence[str]) -> Mapping[str, str] | None:
    """The values of ``keywords`` in the object at ``path``; None when nothing is there.

    Something there that is not a readable DICOM file (the user's own file, a folder, a
    FIFO, which is never waited on) holds none of them: empty, so no object received,
    whose SOP Class UID the SCP has checked to be there, counts as the same and replaces it.
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    except FileNotFoundError:  # a dangling link too: replacing it replaces the link alone
        return None
    except OSError:
        return {}
    with open(fd, "rb") as file:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return {}
        try:
            dataset = pydicom.dcmread(file, stop_before_pixels=True, specific_tags=list(keywords))
        except (InvalidDicomError, OSError, EOFError):
            return {}
        except Exception:  # pydicom's other ways of failing on a damaged file
            return {}
    return keyword_texts(dataset, keywords)
