"""A complete secure DICOM node: durable store, SQLite index, Query/Retrieve, one configuration.

``dicomtls serve`` is a thin shell around :func:`start_node`. The node accepts
C-ECHO, C-STORE (every storage SOP class, uncompressed transfer syntaxes), and
C-FIND / C-MOVE / C-GET over what it has stored, in the Patient Root and Study
Root models.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from pydicom.dataset import Dataset

from dicomtls.net.association import Association
from dicomtls.net.link import LinkEvents
from dicomtls.net.qr_scu import QueryModel
from dicomtls.net.scp import DicomServer, Limits, Services, serve_dicom, storage_policy
from dicomtls.node.index import Index, QueryError
from dicomtls.node.storage import DurableStore
from dicomtls.node.store_scp import DurableStoreHandler
from dicomtls.tls.settings import TLSSettings

__all__ = ["NodeConfig", "RunningNode", "start_node"]

log = logging.getLogger("dicomtls.node")

DEFAULT_PORT = 2762  # the DICOM port for TLS (IANA "dicom-tls")
DEFAULT_AE_TITLE = "DICOMTLS"


@dataclass
class NodeConfig:
    store: Path = Path("dicom-store")
    host: str = "0.0.0.0"
    port: int = DEFAULT_PORT
    ae_title: str = DEFAULT_AE_TITLE
    tls: TLSSettings | None = None
    move_destinations: Mapping[str, tuple[str, int]] = field(default_factory=dict)
    move_tls: TLSSettings | None = None
    limits: Limits = field(default_factory=Limits)
    fsync: bool = True


@dataclass
class RunningNode:
    config: NodeConfig
    server: DicomServer
    store: DurableStore
    index: Index

    @property
    def port(self) -> int:
        return self.server.port

    async def close(self) -> None:
        await self.server.close()
        self.index.close()


class _QueryRetrieve:
    """C-FIND and C-MOVE/C-GET answered from the index."""

    def __init__(self, index: Index) -> None:
        self.index = index

    def find(
        self, association: Association, sop_class: str, identifier: Dataset
    ) -> Iterable[Dataset]:
        try:
            yield from self.index.find(identifier)
        except QueryError as exc:
            log.warning("C-FIND from %s: %s", association.peer, exc)

    def retrieve(
        self, association: Association, sop_class: str, identifier: Dataset
    ) -> Iterable[Path]:
        return self.index.files(identifier)


async def start_node(config: NodeConfig, *, events: LinkEvents | None = None) -> RunningNode:
    """Open (or create) the store and its index, then listen."""
    store = DurableStore(config.store, fsync=config.fsync)
    leftovers = store.recover()
    if leftovers:
        log.warning("removed %d partial object(s) left by an earlier crash", leftovers)
    index = Index(config.store / "index.sqlite")
    qr = _QueryRetrieve(index)

    def on_stored(path: Path, dataset: Dataset) -> None:
        syntax = str(getattr(getattr(dataset, "file_meta", None), "TransferSyntaxUID", ""))
        index.add(path, dataset, syntax)

    services = Services(
        store=DurableStoreHandler(store, on_stored),
        find=qr.find,
        retrieve=qr.retrieve,
        move_destinations=config.move_destinations,
        move_tls=config.move_tls,
    )
    query_retrieve = [uid for model in QueryModel for uid in model.value]
    policy = storage_policy(config.ae_title, also=query_retrieve)
    server = await serve_dicom(
        config.host, config.port, config.tls, policy, services, limits=config.limits, events=events
    )
    return RunningNode(config, server, store, index)
