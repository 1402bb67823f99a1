"""A peer to call: echo, store, find, move and get, each proposing what it needs.

:func:`~dicomtls.net.association.associate` leaves the presentation contexts to the
caller; a :class:`Peer`'s calls choose them from the request itself. ``store`` proposes each file's
SOP class in each file's syntax; ``find`` and ``move`` their model's SOP class; ``get``
first asks the peer which SOP classes the studies hold (a study-level C-FIND for SOP
Classes in Study) and proposes those in every transfer syntax, so objects come back as
the peer stores them. Each call releases its association before it returns.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any, Union

from dicomtls.dimse.transfer_syntax import STORAGE_TRANSFER_SYNTAXES, UNCOMPRESSED
from dicomtls.dimse.uids import VERIFICATION, uid_problem
from dicomtls.errors import DicomTLSError
from dicomtls.logs import get_logger
from dicomtls.net.association import (
    DIMSE_TIMEOUT,
    Association,
    AssociationError,
    associate,
    proposals_for,
)
from dicomtls.net.hooks import StoreTarget
from dicomtls.net.link import LinkEvents
from dicomtls.net.qr_scu import QueryModel, RetrieveResult, retrieve_proposals
from dicomtls.tls.settings import TLSSettings
from dicomtls.ul.acse import Proposal

if TYPE_CHECKING:
    from pydicom.dataset import Dataset

__all__ = ["KeywordError", "Peer", "PeerAddress", "Query", "query"]

log = get_logger("dicomtls.net")

#: Studies whose series a C-GET asks about, one by one, when the peer does not return SOP
#: Classes in Study (a retrieval names one study, or a patient's few).
_MAX_STUDIES_ASKED = 16

Query = Union["Dataset", Mapping[str, Any]]
"""An identifier: a data set, or keyword -> value (``{"QueryRetrieveLevel": "STUDY", ...}``)."""


class KeywordError(DicomTLSError, KeyError):
    """A query names a keyword DICOM does not have (a KeyError still, as it was)."""

    def __str__(self) -> str:  # KeyError's would quote the message again
        return str(self.args[0])


def query(identifier: Query) -> Dataset:
    """A data set from a mapping of keywords (:class:`KeywordError` for one that is not one,
    checked first: pydicom would take it as an attribute, with two warnings on stderr)."""
    from pydicom.datadict import tag_for_keyword
    from pydicom.dataset import Dataset

    if isinstance(identifier, Dataset):
        return identifier
    dataset = Dataset()
    for keyword, value in identifier.items():
        if tag_for_keyword(keyword) is None:
            raise KeywordError(f"{keyword!r} is not a DICOM keyword")
        setattr(dataset, keyword, value)
    return dataset


@dataclass(frozen=True)
class PeerAddress:
    """A remote application entity and how to reach it (what ``associate`` takes)."""

    host: str
    port: int
    tls: TLSSettings | None
    calling_ae: str = "DICOMTLS-SCU"
    called_ae: str = "ANY-SCP"
    dimse_timeout: float | None = DIMSE_TIMEOUT
    events: LinkEvents | None = None

    def address(self) -> PeerAddress:
        """These fields alone, for a peer of the other API (asyncio or blocking)."""
        return PeerAddress(**{f.name: getattr(self, f.name) for f in fields(PeerAddress)})


@dataclass(frozen=True)
class Peer(PeerAddress):
    """A remote application entity; each call opens its own association with the contexts
    it needs and releases it before returning."""

    async def associate(
        self, proposals: Sequence[Proposal], *, max_operations: int = 1
    ) -> Association:
        """An association of your own, with ``proposals`` (release it when done)."""
        return await associate(
            self.host,
            self.port,
            self.tls,
            calling_ae=self.calling_ae,
            called_ae=self.called_ae,
            proposals=proposals,
            dimse_timeout=self.dimse_timeout,
            max_operations=max_operations,
            events=self.events,
        )

    async def echo(self) -> int:
        """C-ECHO; the status (0x0000: the peer answers)."""
        async with await self.associate([Proposal(VERIFICATION, UNCOMPRESSED)]) as assoc:
            return await assoc.echo()

    async def store(
        self, paths: Iterable[Path | str], *, max_operations: int = 16
    ) -> list[tuple[Path, int | Exception]]:
        """C-STORE each file, up to ``max_operations`` outstanding where the peer allows;
        each file with its status, or the error that kept it back (not DICOM, no context)."""
        files = [Path(p) for p in paths]
        async with await self.associate(
            proposals_for(files), max_operations=max_operations
        ) as assoc:
            return [result async for result in assoc.store_many(files)]

    async def find(
        self, identifier: Query, model: QueryModel = QueryModel.STUDY_ROOT
    ) -> list[Dataset]:
        """C-FIND: every match (the identifier checked before connecting)."""
        wanted = query(identifier)
        async with await self.associate([Proposal(model.find_uid, UNCOMPRESSED)]) as assoc:
            return [match async for match in assoc.find(wanted, model)]

    async def move(
        self, identifier: Query, destination: str, model: QueryModel = QueryModel.STUDY_ROOT
    ) -> RetrieveResult:
        """C-MOVE the matches to AE title ``destination`` (the identifier checked first)."""
        wanted = query(identifier)
        async with await self.associate([Proposal(model.move_uid, UNCOMPRESSED)]) as assoc:
            return await assoc.move(wanted, destination, model)

    async def get(
        self,
        identifier: Query,
        target: StoreTarget | Path | str,
        model: QueryModel = QueryModel.STUDY_ROOT,
        transfer_syntaxes: Sequence[str] = STORAGE_TRANSFER_SYNTAXES,
    ) -> RetrieveResult:
        """C-GET the matches onto the association, into ``target`` (a store target, or a
        folder where each object is written durably as ``<SOP Instance UID>.dcm``), asking
        first which SOP classes the studies hold, and receiving each in any of
        ``transfer_syntaxes``."""
        wanted = query(identifier)
        if isinstance(target, Path | str):
            from dicomtls.node.store_scp import DurableStoreHandler

            target = DurableStoreHandler(target)
        classes = await self.classes_in_study(wanted, model) or None  # None: the common ones
        async with await self.associate(
            retrieve_proposals(model, classes, transfer_syntaxes)
        ) as assoc:
            return await assoc.get(wanted, target, model)

    async def classes_in_study(self, identifier: Query, model: QueryModel) -> list[str]:
        """The SOP classes of the studies ``identifier`` names: a study-level C-FIND for SOP
        Classes in Study, or, for a peer that does not return that key, the SOP Class UID of
        each instance, series by series. [] when the peer answers neither (or refuses)."""
        named = query(identifier)
        try:
            async with await self.associate([Proposal(model.find_uid, UNCOMPRESSED)]) as assoc:
                return await _classes_in_study(assoc, named, model)
        except AssociationError:
            return []


async def _classes_in_study(assoc: Association, named: Dataset, model: QueryModel) -> list[str]:
    study = _study_query(named)
    studies = [match async for match in assoc.find(study, model)]
    listed = {str(uid) for match in studies for uid in _listed(match.get("SOPClassesInStudy"))}
    if classes := _uids(listed, assoc.peer):
        return classes
    patient = {"PatientID": study.PatientID} if "PatientID" in study else {}
    found: set[str] = set()
    for match in studies[:_MAX_STUDIES_ASKED]:
        one_study = {**patient, "StudyInstanceUID": match.get("StudyInstanceUID", "")}
        found |= await _classes_of_instances(assoc, one_study, model)
    return _uids({c for c in found if c and c != "None"}, assoc.peer)


def _uids(classes: set[str], peer: str) -> list[str]:
    """The SOP classes a peer named that are UIDs, sorted; the others said in one warning.
    A value that is no UID names nothing we could propose (and no A-ASSOCIATE-RQ could
    carry it), so one sloppy or hostile value would otherwise end the retrieval."""
    bad = sorted(c for c in classes if uid_problem(c) is not None)
    if bad:
        log.warning(
            "%s named SOP classes that are not a UID, left out: %s", peer, ", ".join(map(repr, bad))
        )
    return sorted(classes.difference(bad))


def _study_query(named: Dataset) -> Dataset:
    """A study-level C-FIND for SOP Classes in Study, of the patient and study ``named``
    names (every study, if it names none)."""
    keys = {k: named[k].value for k in ("PatientID", "StudyInstanceUID") if k in named}
    return query(
        {"QueryRetrieveLevel": "STUDY", "StudyInstanceUID": "", **keys, "SOPClassesInStudy": ""}
    )


async def _classes_of_instances(
    assoc: Association, study_keys: dict[str, Any], model: QueryModel
) -> set[str]:
    """The SOP Class UID of each instance of one study, series by series: for a peer that
    does not return SOP Classes in Study."""
    series = query({"QueryRetrieveLevel": "SERIES", **study_keys, "SeriesInstanceUID": ""})
    classes: set[str] = set()
    for found in [match async for match in assoc.find(series, model)]:
        images = query(
            {
                "QueryRetrieveLevel": "IMAGE",
                **study_keys,
                "SeriesInstanceUID": found.get("SeriesInstanceUID", ""),
                "SOPInstanceUID": "",
                "SOPClassUID": "",
            }
        )
        classes.update([str(m.get("SOPClassUID")) async for m in assoc.find(images, model)])
    return classes


def _listed(value: Any) -> list[Any]:
    """A multi-valued element's values; one value, or none, as a list too."""
    if not value:
        return []
    return [value] if isinstance(value, str) else list(value)
