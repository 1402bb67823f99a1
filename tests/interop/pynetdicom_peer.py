"""pynetdicom 3 as a test peer: a small archive that is a storage, C-FIND, C-GET and C-MOVE
SCP over the standard library's TLS, and the SCU calls that drive our node.

What it receives it keeps exactly as it arrived (``event.encoded_dataset()``: the data
set bytes from the wire behind a file meta header), one Part 10 file per SOP Instance
UID. Its SCU sends a file without decoding it (pynetdicom's chunked sending), so the
bytes on the wire are the file's; its C-GET and C-MOVE SCPs take only decoded data
sets, which pydicom encodes again for the wire. A pynetdicom requestor gets one
accepted syntax per presentation context: compressed syntaxes are offered in
contexts of their own.
"""

from __future__ import annotations

import fnmatch
import ssl
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import pydicom
from pydicom.dataset import Dataset
from pynetdicom import AE, _config, build_context, build_role, evt
from pynetdicom.association import Association as PynetAssociation
from pynetdicom.dimse_primitives import C_STORE
from pynetdicom.events import EventHandlerType
from pynetdicom.presentation import PresentationContext
from pynetdicom.sop_class import (
    StudyRootQueryRetrieveInformationModelFind,
    StudyRootQueryRetrieveInformationModelGet,
    StudyRootQueryRetrieveInformationModelMove,
    Verification,
)

from .corpus import SAMPLES, Scenario

PYNET_SCP_AE = "PYNETSCP"
PYNET_SCU_AE = "PYNETSCU"
EVERY_SYNTAX = tuple(dict.fromkeys(s.syntax for s in SAMPLES))
#: What many a storage SCP takes, and nothing else: uncompressed little endian.
LITTLE_ENDIAN = ("1.2.840.10008.1.2", "1.2.840.10008.1.2.1")
QR_MODELS = (
    StudyRootQueryRetrieveInformationModelFind,
    StudyRootQueryRetrieveInformationModelGet,
    StudyRootQueryRetrieveInformationModelMove,
)


def storage_contexts(scenario: Scenario) -> list[PresentationContext]:
    """One requested context per (SOP class, transfer syntax) of the scenario's objects."""
    pairs = dict.fromkeys((i.sop_class_uid, i.sample.syntax) for i in scenario.items)
    return [build_context(sop, [syntax]) for sop, syntax in pairs]


def little_endian_contexts(scenario: Scenario) -> list[PresentationContext]:
    """One requested context per SOP class, in uncompressed little endian only."""
    classes = dict.fromkeys(i.sop_class_uid for i in scenario.items)
    return [build_context(sop, list(LITTLE_ENDIAN)) for sop in classes]


@dataclass
class Archive:
    """The peer's storage: Part 10 files by SOP Instance UID, as received or preloaded."""

    folder: Path
    received_syntax: dict[str, str] = field(default_factory=dict)

    def path(self, sop_instance_uid: str) -> Path:
        return self.folder / f"{sop_instance_uid}.dcm"

    def file(self, sop_instance_uid: str) -> Path | None:
        path = self.path(sop_instance_uid)
        return path if path.exists() else None

    def preload(self, scenario: Scenario) -> None:
        for item in scenario.items:
            self.path(item.sop_instance_uid).write_bytes(item.path.read_bytes())

    def matches(self, identifier: Dataset) -> Iterator[tuple[Path, Dataset]]:
        """Every stored object the identifier's keys match (single values, wildcards)."""
        for path in sorted(self.folder.glob("*.dcm")):
            ds = pydicom.dcmread(path, stop_before_pixels=True)
            if all(
                _matches(ds, e.keyword, e.value) for e in identifier if e.keyword not in _NOT_KEYS
            ):
                yield path, ds


_NOT_KEYS = {"QueryRetrieveLevel", "SpecificCharacterSet", ""}


def _matches(ds: Dataset, keyword: str, wanted: Any) -> bool:
    text = str(wanted or "")
    if not text or text == "*":
        return True  # universal matching
    have = str(ds.get(keyword, ""))
    return fnmatch.fnmatchcase(have, text.replace("[", "[[]"))  # DICOM's * and ? are fnmatch's


class PynetPeer:
    """A pynetdicom AE serving ``archive``: storage SCP for ``syntaxes``, Study Root
    FIND/GET/MOVE SCP; C-MOVE reaches ``destinations`` (AE title -> port) over TLS."""

    def __init__(
        self,
        archive: Archive,
        server_tls: ssl.SSLContext,
        client_tls: ssl.SSLContext,
        sop_classes: list[str],
        syntaxes: tuple[str, ...],
        port: int,
        destinations: dict[str, int],
        *,
        ae_title: str = PYNET_SCP_AE,
    ) -> None:
        self.archive = archive
        self.client_tls = client_tls
        self.sop_classes = sop_classes
        self.destinations = destinations
        self.move_contexts: list[PresentationContext] = []
        ae = AE(ae_title=ae_title)
        ae.add_supported_context(Verification)
        for model in QR_MODELS:
            ae.add_supported_context(model)
        for sop in sop_classes:
            # Both roles: a storage SCP for C-STOREs, the SCU of C-GET's sub-operations.
            ae.add_supported_context(sop, list(syntaxes), scu_role=True, scp_role=True)
        handlers: list[EventHandlerType] = [
            (evt.EVT_C_STORE, self._store),
            (evt.EVT_C_FIND, self._find),
            (evt.EVT_C_GET, self._get),
            (evt.EVT_C_MOVE, self._move),
        ]
        server = ae.start_server(
            ("127.0.0.1", port), block=False, evt_handlers=handlers, ssl_context=server_tls
        )
        assert server is not None  # block=False: it serves from its own thread
        self.server = server
        self.port = port

    def stop(self) -> None:
        self.server.shutdown()

    def _store(self, event: evt.Event) -> int:
        request = cast(C_STORE, event.request)  # what an EVT_C_STORE carries
        uid = str(request.AffectedSOPInstanceUID)
        self.archive.path(uid).write_bytes(event.encoded_dataset())
        self.archive.received_syntax[uid] = str(event.context.transfer_syntax)
        return 0x0000

    def _find(self, event: evt.Event) -> Iterator[tuple[int, Dataset | None]]:
        identifier = event.identifier
        level = str(identifier.QueryRetrieveLevel)
        unique = {
            "STUDY": "StudyInstanceUID",
            "SERIES": "SeriesInstanceUID",
            "IMAGE": "SOPInstanceUID",
        }[level]
        seen = set()
        for _, ds in self.archive.matches(identifier):
            if ds.get(unique) in seen:
                continue
            seen.add(ds.get(unique))
            answer = Dataset()
            answer.SpecificCharacterSet = "ISO_IR 192"
            answer.QueryRetrieveLevel = level
            for element in identifier:
                if element.keyword not in _NOT_KEYS:
                    setattr(answer, element.keyword, ds.get(element.keyword, ""))
            yield 0xFF00, answer

    def _get(self, event: evt.Event) -> Iterator[int | tuple[int, Dataset]]:
        paths = [path for path, _ in self.archive.matches(event.identifier)]
        yield len(paths)
        for path in paths:
            yield 0xFF00, pydicom.dcmread(path)  # its C-GET SCP sends data sets, not files

    def _move(self, event: evt.Event) -> Iterator[Any]:
        port = self.destinations.get(str(event.move_destination).strip())
        if port is None:
            yield None, None  # Move Destination unknown
            return
        paths = [path for path, _ in self.archive.matches(event.identifier)]
        contexts = self.move_contexts or [build_context(sop) for sop in self.sop_classes]
        yield "127.0.0.1", port, {"tls_args": (self.client_tls, None), "contexts": contexts}
        yield len(paths)
        for path in paths:
            yield 0xFF00, pydicom.dcmread(path)  # its C-MOVE SCP sends data sets, not files


def send_files_chunked() -> bool:
    """Let pynetdicom send a file's data set from disk as it is (no decoding, no
    re-encoding); the previous setting, to put back."""
    previous = bool(_config.STORE_SEND_CHUNKED_DATASET)
    _config.STORE_SEND_CHUNKED_DATASET = True
    return previous


def restore_chunked(previous: bool) -> None:
    _config.STORE_SEND_CHUNKED_DATASET = previous


def associate_scu(
    port: int,
    called_ae: str,
    tls: ssl.SSLContext,
    contexts: list[PresentationContext],
    **kwargs: Any,
) -> PynetAssociation:
    """A pynetdicom requestor association with exactly ``contexts``."""
    ae = AE(ae_title=PYNET_SCU_AE)
    ae.requested_contexts = contexts
    # server_hostname None (no hostname check) is what ssl takes; pynetdicom's annotation says str
    tls_args = (tls, None)
    assoc = ae.associate("127.0.0.1", port, ae_title=called_ae, tls_args=tls_args, **kwargs)  # type: ignore[arg-type]
    assert assoc.is_established, f"pynetdicom could not associate with {called_ae} on {port}"
    return assoc


def get_roles(scenario: Scenario) -> list[Any]:
    """SCP/SCU role selection items: we are the SCP of each storage class for C-GET."""
    return [
        build_role(sop, scp_role=True)
        for sop in dict.fromkeys(i.sop_class_uid for i in scenario.items)
    ]


def qr_context(model: Any) -> PresentationContext:
    return build_context(model)
