"""A small hospital site for the node tests: one CA, named nodes, and a node started in-process."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dicomtls.net.association import Association, associate, default_proposals
from dicomtls.net.qr_scu import QueryModel
from dicomtls.node.node import NodeConfig, RunningNode, start_node
from dicomtls.pki import CertificateAuthority, Credentials, KeySpec
from dicomtls.tls.settings import TLSSettings
from dicomtls.ul.acse import Proposal

from .test_storage import CT

EXPLICIT, IMPLICIT = "1.2.840.10008.1.2.1", "1.2.840.10008.1.2"
QR = QueryModel.STUDY_ROOT

#: (common name, DNS names, IP addresses) of the site's certificates.
MEMBERS = {
    "pacs": ("pacs.radiology.example", ["localhost"], ["127.0.0.1"]),
    "ct1": ("ct1.radiology.example", ["ct1.radiology.example"], ["10.1.2.3"]),
    "viewer": ("viewer.radiology.example", ["viewer.radiology.example"], ["127.0.0.1"]),
    "intruder": ("intruder.example", ["intruder.example"], ["10.6.6.6"]),
}


@dataclass
class Site:
    directory: Path
    ca: CertificateAuthority
    ca_file: Path
    identities: dict[str, Credentials] = field(default_factory=dict)

    def files(self, name: str) -> tuple[Path, Path]:
        return self.directory / f"{name}-chain.pem", self.directory / f"{name}.key"

    def settings(self, name: str, **extra: Any) -> TLSSettings:
        chain, key = self.files(name)
        return TLSSettings(certificate=chain, private_key=key, ca_files=self.ca_file, **extra)

    def tls_args(self, name: str) -> list[str]:
        """The ``dicomtls`` options presenting ``name``'s certificate, trusting the site CA."""
        chain, key = self.files(name)
        return ["--tls-cert", str(chain), "--tls-key", str(key), "--ca", str(self.ca_file)]

    def add(
        self, name: str, common_name: str, dns: list[str], ips: list[str], **kw: Any
    ) -> Credentials:
        identity = self.ca.issue(common_name, dns=dns, ips=ips, **kw)
        identity.write(self.directory, name)
        self.identities[name] = identity
        return identity


def make_site(directory: Path) -> Site:
    ca = CertificateAuthority.create("Radiology Site CA", key=KeySpec.ec())
    ca_file = ca.write_cert(directory / "ca.pem")
    site = Site(directory, ca, ca_file)
    for name, (cn, dns, ips) in MEMBERS.items():
        site.add(name, cn, dns, ips)
    return site


def qr_proposals() -> list[Proposal]:
    return [
        *default_proposals(),
        Proposal(QR.find_uid, (EXPLICIT,)),
        Proposal(QR.move_uid, (EXPLICIT,)),
        Proposal(QR.get_uid, (EXPLICIT,)),
        # CT both ways: stored as SCU, received back by C-GET as SCP (PS3.7 D.3.3.4)
        Proposal(CT, (EXPLICIT, IMPLICIT), scu_role=True, scp_role=True),
    ]


@contextlib.asynccontextmanager
async def running(
    site: Site, store: Path, name: str = "pacs", **config: Any
) -> AsyncIterator[RunningNode]:
    """A node named ``name`` on a free loopback port, closed afterwards."""
    settings = config.pop("tls", None) or site.settings(name)
    node = await start_node(
        NodeConfig(
            store=store,
            host="127.0.0.1",
            port=0,
            ae_title=name.upper(),
            tls=settings,
            move_tls=config.pop("move_tls", None) or site.settings(name),
            **config,
        )
    )
    try:
        yield node
    finally:
        await node.close()


async def connect_to(
    site: Site, port: int, identity: str, calling_ae: str, called_ae: str, **kw: Any
) -> Association:
    """An association on loopback as ``identity``, proposing query/retrieve and CT storage
    unless ``proposals`` says otherwise."""
    return await associate(
        "127.0.0.1",
        port,
        site.settings(identity),
        calling_ae=calling_ae,
        called_ae=called_ae,
        proposals=kw.pop("proposals", None) or qr_proposals(),
        **kw,
    )


async def connect_as(
    site: Site, node: RunningNode, identity: str, calling_ae: str, **kw: Any
) -> Association:
    return await connect_to(site, node.port, identity, calling_ae, node.config.ae_title, **kw)
