"""Access policy: AE titles bound to certificates, per-rule services and C-MOVE destinations.

The decisions are checked twice: directly on real certificates, and over real
mutual-TLS associations with a node, where a refusal must be the standard's
A-ASSOCIATE-RJ reason and one log line that names the rule.
"""

from __future__ import annotations

import asyncio
import logging
import tomllib
from pathlib import Path

import pytest
from pydicom.dataset import Dataset

from dicomtls.dimse.sop_classes import Service
from dicomtls.net.association import AssociationError
from dicomtls.net.qr_scu import RetrieveResult
from dicomtls.node.policy import AccessPolicy, PolicyError
from dicomtls.node.storage import DurableStore
from dicomtls.node.store_scp import DurableStoreHandler
from dicomtls.pki import CertificateAuthority, KeySpec
from dicomtls.tls.certinfo import CertificateInfo
from dicomtls.tls.flags import VerifyFlags
from dicomtls.tls.verify_error import VerifyError

from .site import QR, Site, connect_as, make_site, running
from .test_storage import STUDY_UID, _make_file


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Site:
    return make_site(tmp_path_factory.mktemp("site"))


def info(site: Site, name: str) -> CertificateInfo:
    return CertificateInfo.from_certificate(site.identities[name].certificate)


def policy(text: str, destinations: tuple[str, ...] = ()) -> AccessPolicy:
    return AccessPolicy.from_config(tomllib.loads(text).get("access"), destinations)


def fingerprint(site: Site, name: str) -> str:
    return info(site, name).sha256_fingerprint


# -- decisions on real certificates --------------------------------------------------------


@pytest.mark.parametrize(
    ("selector", "holder", "granted"),
    [
        ('{ cn = "ct1.radiology.example" }', "ct1", True),
        ('{ cn = "CT1.Radiology.Example" }', "ct1", True),  # CN compares like a host name
        ('{ cn = "ct1.radiology.example" }', "intruder", False),
        ('{ san = "DNS:ct1.radiology.example" }', "ct1", True),
        ('{ san = "DNS:ct1.radiology.example" }', "viewer", False),
        ('{ san = "IP:10.1.2.3" }', "ct1", True),
        ('{ san = "IP:10.1.2.4" }', "ct1", False),
        ("FINGERPRINT_OF_CT1", "ct1", True),
        ("FINGERPRINT_OF_CT1", "intruder", False),
    ],
)
def test_each_rule_type_allows_its_certificate_and_denies_others(
    site: Site, selector: str, holder: str, granted: bool
) -> None:
    if selector == "FINGERPRINT_OF_CT1":
        selector = f'{{ fingerprint = "{fingerprint(site, "ct1").lower()}" }}'
    rules = policy(
        f"""
        [[access.rule]]
        name = "ct-scanner"
        ae_title = "CT1"
        certificate = {selector}
        services = ["echo", "store"]
        """
    )
    admission = rules.admit("CT1", info(site, holder))
    if granted:
        assert admission.refusal is None
        assert admission.services == frozenset({Service.ECHO, Service.STORE})
        assert admission.rule == "rule 'ct-scanner'"
    else:
        assert admission.refusal is not None
        assert "rule 'ct-scanner' requires" in admission.refusal
        assert repr(info(site, holder).subject) in admission.refusal


def test_a_bound_certificate_cannot_claim_another_ae_title(site: Site) -> None:
    rules = policy(
        """
        [[access.rule]]
        name = "ct-scanner"
        ae_title = "CT1"
        certificate = { cn = "ct1.radiology.example" }
        """
    )
    refused = rules.admit("PACS_ADMIN", info(site, "ct1"))
    assert refused.refusal is not None
    assert "bound to 'CT1' by rule 'ct-scanner', but claims 'PACS_ADMIN'" in refused.refusal
    # A peer nobody bound gets the default: every service, C-GET included (it returns data
    # only to the caller, as C-FIND does).
    default = rules.admit("WORKSTATION", info(site, "viewer"))
    assert default.refusal is None
    assert default.services == frozenset(Service)
    # A configured destination may C-GET: the objects come back to it.
    with_get = policy("", ("WORKSTATION",)).admit("WORKSTATION", info(site, "viewer"))
    assert with_get.services is not None and Service.GET in with_get.services


def test_unknown_ae_titles_can_be_refused_and_no_certificate_never_matches(site: Site) -> None:
    rules = policy(
        """
        [access]
        unknown_ae = "reject"
        [[access.rule]]
        name = "ct"
        ae_title = "CT1"
        certificate = { san = "IP:10.1.2.3" }
        """
    )
    refused = rules.admit("OTHER", info(site, "viewer"))
    assert refused.refusal is not None and "access.unknown_ae = 'reject'" in refused.refusal
    no_cert = rules.admit("CT1", None)
    assert no_cert.refusal is not None and "presented no certificate" in no_cert.refusal


@pytest.mark.parametrize(
    ("toml", "message"),
    [
        ('[[access.rule]]\nae_title = "CT1"', "certificate is missing"),
        (
            '[[access.rule]]\nname = "x"\nae_title = "CT1"\ncertificate = { cn = "a", san = "DNS:b" }',
            "must be one of",
        ),
        (
            '[[access.rule]]\nname = "x"\nae_title = "CT1"\ncertificate = { serial = "1" }',
            "cn, san or fingerprint",
        ),
        (
            '[[access.rule]]\nname = "x"\nae_title = "CT1"\ncertificate = { fingerprint = "abc" }',
            "64 hex digits",
        ),
        (
            '[[access.rule]]\nname = "x"\nae_title = "CT1"\ncertificate = { san = "10.0.0.1" }',
            "DNS:name, IP:address",
        ),
        (
            '[[access.rule]]\nname = "x"\nae_title = "CT1"\ncertificate = { san = "IP:ten" }',
            "not an IP address",
        ),
        (
            '[[access.rule]]\nname = "x"\nae_title = "CT1"\ncertificate = { cn = "a" }\nservices = ["echo", "print"]',
            "each must be one of",
        ),
        (
            '[[access.rule]]\nname = "x"\nae_title = "THIS_TITLE_IS_TOO_LONG"\ncertificate = { cn = "a" }',
            "1 to 16 characters",
        ),
        (
            '[[access.rule]]\nname = "x"\nae_title = "A"\ncertificate = { cn = "a" }\nmove_to = ["B"]',
            "unknown key(s) move_to",
        ),
        (
            '[[access.rule]]\nname = "x"\nae_title = "A"\ncertificate = { cn = "a" }\n[[access.rule]]\nname = "x"\nae_title = "B"\ncertificate = { cn = "b" }',
            "used twice: x",
        ),
        ('[access]\nunknown_ae = "maybe"', "'allow' or 'reject'"),
    ],
)
def test_configuration_mistakes_are_one_line_naming_the_rule(toml: str, message: str) -> None:
    with pytest.raises(PolicyError) as caught:
        policy(toml)
    text = str(caught.value)
    assert message in text and "\n" not in text


# -- over real associations ----------------------------------------------------------------

SITE_POLICY = """
[[access.rule]]
name = "ct-scanner"
ae_title = "CT1"
certificate = { san = "IP:10.1.2.3" }
services = ["echo", "store"]

[[access.rule]]
name = "viewer"
ae_title = "VIEWER"
certificate = { fingerprint = "VIEWER_FINGERPRINT" }
services = ["echo", "find", "move"]
move_destinations = ["VIEWER"]
"""


def _site_policy(site: Site, destinations: tuple[str, ...]) -> AccessPolicy:
    return policy(
        SITE_POLICY.replace("VIEWER_FINGERPRINT", fingerprint(site, "viewer")), destinations
    )


def _plain(fp: str) -> str:
    return fp.replace(":", "").lower()


def _study_query() -> Dataset:
    ds = Dataset()
    ds.QueryRetrieveLevel = "STUDY"
    ds.StudyInstanceUID = STUDY_UID
    return ds


async def _over_the_wire(site: Site, tmp: Path) -> dict[str, object]:
    out: dict[str, object] = {}
    sample = tmp / "ct.dcm"
    _make_file(sample, pixels=20_000)
    async with running(site, tmp / "viewer-store", "viewer") as viewer:
        destinations = {
            "VIEWER": ("127.0.0.1", viewer.port),
            "ELSEWHERE": ("127.0.0.1", viewer.port),
        }
        access = _site_policy(site, tuple(destinations))
        async with running(
            site, tmp / "pacs-store", access=access, move_destinations=destinations
        ) as pacs:
            async with await connect_as(site, pacs, "ct1", "CT1") as ct:
                out["ct_echo"] = await ct.echo()
                out["ct_store"] = await ct.store(sample)
                try:
                    [m async for m in ct.find(_study_query(), QR)]
                except AssociationError as exc:
                    out["ct_find"] = str(exc)
            try:
                await connect_as(site, pacs, "intruder", "CT1")
            except AssociationError as exc:
                out["impostor"] = str(exc)
            try:
                await connect_as(site, pacs, "ct1", "VIEWER")
            except AssociationError as exc:
                out["ct_as_viewer"] = str(exc)
            try:
                await connect_as(site, pacs, "ct1", "WORKSTATION")
            except AssociationError as exc:
                out["ct_as_workstation"] = str(exc)
            async with await connect_as(site, pacs, "viewer", "VIEWER") as view:
                out["found"] = [m.StudyInstanceUID async for m in view.find(_study_query(), QR)]
                out["move_ok"] = await view.move(_study_query(), "VIEWER", QR)
                out["move_elsewhere"] = await view.move(_study_query(), "ELSEWHERE", QR)
                try:
                    await view.get(
                        _study_query(), DurableStoreHandler(DurableStore(tmp / "got")), QR
                    )
                except AssociationError as exc:
                    out["viewer_get"] = str(exc)
    out["viewer_has"] = sorted(p.name for p in (tmp / "viewer-store").rglob("*.dcm"))
    return out


def test_rules_over_mutual_tls(
    site: Site, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="dicomtls"):
        out = asyncio.run(_over_the_wire(site, tmp_path))
    lines = [r.getMessage() for r in caplog.records]

    # The CT may echo and store, and nothing else: find was declined at negotiation.
    assert out["ct_echo"] == 0 and out["ct_store"] == 0
    assert "did not accept C-FIND" in str(out["ct_find"])
    assert any("rule 'ct-scanner' does not grant find, get, move" in line for line in lines), lines

    # Someone else's certificate claiming CT1, CT1's certificate claiming VIEWER or an unbound
    # title: the standard's rejection, and a log line naming the rule that failed.
    for key in ("impostor", "ct_as_viewer", "ct_as_workstation"):
        assert "CALLING_AE_NOT_RECOGNIZED" in str(out[key]) and "PERMANENT" in str(out[key])
    impostor = [line for line in lines if "'intruder.example" in line or "intruder.example" in line]
    assert (
        len(impostor) == 1
        and "rule 'ct-scanner' requires subjectAltName IP:10.1.2.3" in impostor[0]
    )
    viewer_fp = (
        f"rule 'viewer' requires SHA-256 fingerprint '{_plain(fingerprint(site, 'viewer'))}'"
    )
    assert any(
        "presented 'CN = ct1.radiology.example" in line and viewer_fp in line for line in lines
    )
    assert any(
        "bound to 'CT1' by rule 'ct-scanner', but claims 'WORKSTATION'" in line for line in lines
    )

    # The viewer (bound by fingerprint) finds and moves to itself, not elsewhere, and may not get.
    assert out["found"] == [STUDY_UID]
    move_ok, move_elsewhere = out["move_ok"], out["move_elsewhere"]
    assert isinstance(move_ok, RetrieveResult) and isinstance(move_elsewhere, RetrieveResult)
    assert move_ok.ok and move_ok.completed == 1
    assert move_elsewhere.status == 0xA801
    assert any(
        line.startswith("C-MOVE from")
        and "to 'ELSEWHERE': rule 'viewer' allows C-MOVE to VIEWER only" in line
        for line in lines
    )
    assert "did not accept C-GET" in str(out["viewer_get"])
    viewer_has = out["viewer_has"]
    assert isinstance(viewer_has, list) and len(viewer_has) == 1


def test_a_certificate_that_failed_verification_matches_no_rule(
    site: Site, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A verify callback may let a failed certificate through (to log it, say); a rule
    must still not take that certificate's word for who the peer is. A self-signed
    certificate naming ct1 is refused as CT1, and gets the default policy under its own title."""
    forger = CertificateAuthority.create("Forger CA", key=KeySpec.ec())
    forged = forger.issue("ct1.radiology.example", dns=["ct1.radiology.example"], ips=["10.1.2.3"])
    forged.write(site.directory, "forged-ct1")
    lenient = site.settings(
        "pacs", verify=VerifyFlags.PEER | VerifyFlags.FAIL_IF_NO_PEER_CERT, on_verify=_let_through
    )

    async def attempt() -> tuple[object, int]:
        async with running(
            site, tmp_path / "store", tls=lenient, access=_site_policy(site, ())
        ) as pacs:
            claimed: object = "accepted"
            try:
                async with await connect_as(site, pacs, "forged-ct1", "CT1") as ct1:
                    await ct1.echo()
            except AssociationError as exc:
                claimed = exc
            async with await connect_as(site, pacs, "forged-ct1", "FORGER") as own:
                return claimed, await own.echo()

    with caplog.at_level(logging.WARNING, logger="dicomtls"):
        claimed, echoed = asyncio.run(attempt())
    assert "CALLING_AE_NOT_RECOGNIZED" in str(claimed), claimed
    assert echoed == 0
    lines = [r.getMessage() for r in caplog.records]
    assert any(
        "'CT1' is bound to a certificate and the peer presented a certificate that failed "
        "verification" in line
        for line in lines
    ), lines


def _let_through(ok: bool, cert: CertificateInfo, error: VerifyError) -> bool:
    return True
