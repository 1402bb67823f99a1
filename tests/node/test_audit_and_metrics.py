"""A node's audit trail at a real rsyslog (RFC 5425, mutual TLS) and its metrics over HTTP.

One scenario drives every event type the node audits: start, stores, a query, a
C-MOVE and a C-GET, an association refused by the access policy, a handshake
refused for a revoked certificate, and stop. Every message that reaches rsyslog
must validate against the PS3.15 A.5.1 schema; the file sink must hold the same.
"""

from __future__ import annotations

import asyncio
import urllib.request
from collections import Counter
from pathlib import Path

import pytest
from lxml import etree
from prometheus_client.parser import text_string_to_metric_families
from pydicom.dataset import Dataset

from dicomtls.audit.transport import AuditTrail, FileSink, SyslogTLSSink
from dicomtls.net.association import AssociationError
from dicomtls.net.qr_scu import RetrieveResult
from dicomtls.node.policy import AccessPolicy
from dicomtls.node.storage import DurableStore
from dicomtls.node.store_scp import DurableStoreHandler
from dicomtls.tls.errors import TLSHandshakeError

from ..audit.conftest import SCHEMA
from ..audit.rsyslog import AuditPKI, Rsyslog
from .site import QR, Site, connect_as, make_site, running
from .test_storage import STUDY_UID, _make_file


def _study() -> Dataset:
    ds = Dataset()
    ds.QueryRetrieveLevel = "STUDY"
    ds.StudyInstanceUID = STUDY_UID
    return ds


def _scrape(port: int) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        text = response.read().decode()
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


async def _scenario(site: Site, tmp: Path, rsyslog: Rsyslog, pki: AuditPKI) -> dict[str, object]:
    files = [tmp / f"ct{i}.dcm" for i in range(2)]
    for path in files:
        _make_file(path, pixels=20_000)
    site.add("revoked", "revoked.radiology.example", ["localhost"], ["127.0.0.1"])
    crl = site.directory / "crl.pem"
    crl.write_bytes(site.ca.crl([site.identities["revoked"]]))
    trail = AuditTrail(
        [
            SyslogTLSSink(
                "127.0.0.1",
                rsyslog.tls_port,
                certificate=pki.client_cert,
                private_key=pki.client_key,
                ca_file=pki.ca,
                server_hostname="localhost",
            ),
            FileSink(tmp / "audit.log"),
        ]
    )
    out: dict[str, object] = {}
    async with running(site, tmp / "viewer-store", "viewer") as viewer:
        destinations = {"VIEWER": ("127.0.0.1", viewer.port), "CT1": ("127.0.0.1", viewer.port)}
        access = AccessPolicy.from_config(
            {
                "rule": [
                    {
                        "name": "ct",
                        "ae_title": "CT1",
                        "certificate": {"cn": "ct1.radiology.example"},
                    }
                ]
            },
            destinations,
        )
        async with running(
            site,
            tmp / "pacs-store",
            tls=site.settings("pacs", crl_files=crl),
            access=access,
            move_destinations=destinations,
            audit=trail,
            metrics_port=0,
        ) as pacs:
            async with await connect_as(site, pacs, "ct1", "CT1") as ct:
                out["stored"] = [await ct.store(path) for path in files]
                out["found"] = [m async for m in ct.find(_study(), QR)]
                out["moved"] = await ct.move(_study(), "VIEWER", QR)
                got = await ct.get(_study(), DurableStoreHandler(DurableStore(tmp / "got")), QR)
                out["got"] = got.completed
            try:
                await connect_as(site, pacs, "intruder", "CT1")
            except AssociationError as exc:
                out["impostor"] = str(exc)
            try:
                async with await connect_as(site, pacs, "revoked", "REVOKED") as assoc:
                    await assoc.echo()
            except (TLSHandshakeError, AssociationError, ConnectionError) as exc:
                out["revoked"] = exc
            assert pacs.metrics_server is not None
            out["metrics"] = _scrape(pacs.metrics_server.port)
    return out


@pytest.fixture(scope="module")
def scenario(
    tmp_path_factory: pytest.TempPathFactory, rsyslog: Rsyslog, audit_pki: AuditPKI
) -> dict[str, object]:
    tmp = tmp_path_factory.mktemp("audited")
    site = make_site(tmp / "pki")
    out = asyncio.run(_scenario(site, tmp, rsyslog, audit_pki))
    out["tmp"] = tmp
    # Eight messages: start, the transfer in (one per association), query, move, get,
    # policy refusal, revoked handshake, stop. Wait for rsyslog to have written them.
    source = 'AuditSourceID="PACS@127.0.0.1"'
    out["received"] = rsyslog.wait_for(rsyslog.tls_log, lambda r: source in r.msg, 8)
    return out


def _events(messages: list[etree._Element]) -> Counter[tuple[str, str, str]]:
    """(EventID, EventTypeCode or '', EventActionCode) of each message."""
    counted: Counter[tuple[str, str, str]] = Counter()
    for root in messages:
        ident = root.find("EventIdentification")
        assert ident is not None
        event_id = ident.find("EventID")
        type_code = ident.find("EventTypeCode")
        counted[
            (
                event_id.get("csd-code") if event_id is not None else "",
                type_code.get("csd-code", "") if type_code is not None else "",
                ident.get("EventActionCode", ""),
            )
        ] += 1
    return counted


def test_every_audit_event_reaches_rsyslog_and_validates(scenario: dict[str, object]) -> None:
    assert scenario["stored"] == [0, 0] and scenario["got"] == 2
    moved = scenario["moved"]
    assert isinstance(moved, RetrieveResult) and moved.completed == 2
    assert "CALLING_AE_NOT_RECOGNIZED" in str(scenario["impostor"])
    assert isinstance(scenario["revoked"], Exception)

    schema = etree.RelaxNG(etree.parse(str(SCHEMA)))
    received = scenario["received"]
    assert isinstance(received, list)
    roots = []
    for record in received:
        assert (record.app_name, record.msgid, record.facility, record.severity) == (
            "dicomtls",
            "DICOM+RFC3881",
            "10",
            "5",
        )  # authpriv.notice, as PS3.15 A.7 asks
        root = etree.fromstring(record.payload.encode())
        assert schema.validate(root), schema.error_log
        roots.append(root)
    events = _events(roots)
    assert events == Counter(
        {
            ("110100", "110120", "E"): 1,  # Application Activity: start
            ("110100", "110121", "E"): 1,  # ... and stop
            ("110104", "", "C"): 1,  # DICOM Instances Transferred: the two stored objects
            ("110104", "", "R"): 2,  # ... sent by C-MOVE and by C-GET
            ("110112", "", "E"): 1,  # Query
            ("110113", "110132", "E"): 1,  # Security Alert: use of restricted function (policy)
            ("110113", "110126", "E"): 1,  # Security Alert: node authentication (revoked)
        }
    ), events

    by_type = {(_code(r, "EventID"), _code(r, "EventTypeCode")): r for r in roots}
    revoked = etree.tostring(by_type[("110113", "110126")]).decode()
    assert "CERT_REVOKED" in revoked and "revoked.radiology.example" in revoked
    refused = etree.tostring(by_type[("110113", "110132")]).decode()
    assert "intruder.example" in refused and "rule 'ct'" in refused
    stored = next(r for r in roots if _code(r, "EventID") == "110104" and _action(r) == "C")
    description = stored.find(".//ParticipantObjectDescription/SOPClass")
    assert description is not None and description.get("NumberOfInstances") == "2"
    assert any(
        p.get("ParticipantObjectID") == STUDY_UID
        for p in stored.iter("ParticipantObjectIdentification")
    )
    assert "AETITLES=CT1" in etree.tostring(stored).decode()


def _code(root: etree._Element, tag: str) -> str:
    element = root.find(f"EventIdentification/{tag}")
    return "" if element is None else str(element.get("csd-code"))


def _action(root: etree._Element) -> str:
    element = root.find("EventIdentification")
    return "" if element is None else str(element.get("EventActionCode"))


def test_the_file_sink_holds_the_same_messages(scenario: dict[str, object]) -> None:
    tmp = scenario["tmp"]
    assert isinstance(tmp, Path)
    lines = (tmp / "audit.log").read_text().splitlines()
    received = scenario["received"]
    assert isinstance(received, list)
    assert sorted(lines) == sorted(r.payload for r in received)


def test_metrics_count_what_happened(scenario: dict[str, object]) -> None:
    m = scenario["metrics"]
    assert isinstance(m, dict)
    assert m[("dicomtls_associations_total", (("reason", ""), ("result", "accepted")))] == 1
    assert (
        m[("dicomtls_associations_total", (("reason", "access-policy"), ("result", "rejected")))]
        == 1
    )
    assert m[("dicomtls_tls_handshake_failures_total", (("code", "CERT_REVOKED"),))] == 1
    assert m[("dicomtls_objects_stored_total", (("result", "success"),))] == 2
    tmp = scenario["tmp"]
    assert isinstance(tmp, Path)
    sizes = sum(p.stat().st_size for p in (tmp / "pacs-store").rglob("*.dcm"))
    assert 0 < m[("dicomtls_bytes_stored_total", ())] <= sizes
    assert m[("dicomtls_store_seconds_count", ())] == 2
    assert m[("dicomtls_tls_handshake_seconds_count", ())] >= 2
    assert 364 < m[("dicomtls_certificate_expiry_days", ())] <= 365
