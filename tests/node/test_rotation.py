"""Certificate rotation and CRL refresh on a running node, over real mutual-TLS associations."""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import os
from pathlib import Path

import pytest

from dicomtls.net.association import Association, AssociationError
from dicomtls.tls.certinfo import CertificateInfo
from dicomtls.tls.errors import TLSHandshakeError
from dicomtls.tls.verify_error import VerifyError

from .site import Site, connect_as, make_site, running
from .test_metrics import scrape, value
from .test_storage import _make_file


@pytest.fixture
def site(tmp_path: Path) -> Site:
    return make_site(tmp_path / "pki")


def replace_atomically(path: Path, data: bytes) -> None:
    """What a careful operator (or certbot) does: write aside, then rename over."""
    aside = path.with_name(path.name + ".new")
    aside.write_bytes(data)
    os.replace(aside, path)


def _serial(assoc: Association) -> int:
    session = assoc.link.session
    assert session is not None and session.peer_certificate is not None
    return int(session.peer_certificate.serial_number)


async def _revocation(site: Site, tmp: Path) -> dict[str, object]:
    crl = site.directory / "crl.pem"
    crl.write_bytes(site.ca.crl([]))
    seen: list[tuple[str, str]] = []

    def on_verify(ok: bool, cert: CertificateInfo, error: VerifyError) -> bool:
        seen.append((cert.subject, error.name))
        return ok

    tls = site.settings("pacs", crl_files=crl, on_verify=on_verify)
    out: dict[str, object] = {}
    async with running(site, tmp / "store", tls=tls) as node:
        async with await connect_as(site, node, "ct1", "CT1") as assoc:
            out["before"] = await assoc.echo()
        replace_atomically(crl, site.ca.crl([site.identities["ct1"]]))
        try:
            async with await connect_as(site, node, "ct1", "CT1") as assoc:
                out["after"] = await assoc.echo()
        except (TLSHandshakeError, AssociationError, ConnectionError) as exc:
            out["after"] = exc
        async with await connect_as(site, node, "viewer", "VIEWER") as assoc:
            out["others"] = await assoc.echo()
    out["seen"] = seen
    return out


def test_a_crl_replaced_on_disk_revokes_at_the_next_handshake(
    site: Site, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="dicomtls"):
        out = asyncio.run(_revocation(site, tmp_path))
    assert out["before"] == 0
    assert isinstance(out["after"], Exception)  # refused, whatever the TLS version lets it say
    assert out["others"] == 0  # a certificate that is not revoked still gets in
    seen = out["seen"]
    assert isinstance(seen, list)
    assert ("CN = ct1.radiology.example, O = dicomtls test PKI", "CERT_REVOKED") in seen
    lines = [r.getMessage() for r in caplog.records]
    assert any("changed on disk: reloaded" in line and "crls=1" in line for line in lines), lines
    failures = [line for line in lines if "failed (server side, stage verify)" in line]
    assert len(failures) == 1 and "CERT_REVOKED" in failures[0]


async def _rotation(site: Site, tmp: Path) -> dict[str, object]:
    sample = tmp / "ct.dcm"
    _make_file(sample, pixels=20_000)
    chain, key = site.files("pacs")
    statuses: list[int] = []
    serials: list[int] = []
    swapped = asyncio.Event()
    warm = asyncio.Event()

    async def store_continuously() -> None:
        """New association per object, as a modality does, until well after the swap."""
        after_swap = 0
        while after_swap < 5:
            async with await connect_as(site, node, "ct1", "CT1") as assoc:
                statuses.append(await assoc.store(sample))
                serials.append(_serial(assoc))
            if len(statuses) == 3:
                warm.set()
            after_swap += swapped.is_set()

    out: dict[str, object] = {}
    async with running(site, tmp / "store") as node:
        old_serial = site.identities["pacs"].certificate.serial_number
        long_running = await connect_as(site, node, "viewer", "VIEWER")  # spans the swap
        client = asyncio.create_task(store_continuously())
        await warm.wait()
        # A half-written key first: refused, the old files stay in force.
        replace_atomically(key, b"-----BEGIN PRIVATE KEY-----\nnot a key\n")
        async with await connect_as(site, node, "ct1", "CT1") as probe:
            out["during_broken"] = (await probe.echo(), _serial(probe))
        # Then the new certificate and key, one file after the other.
        renewed = site.ca.issue("pacs.radiology.example", dns=["localhost"], ips=["127.0.0.1"])
        replace_atomically(key, renewed.private_key_pem())
        replace_atomically(chain, renewed.cert_chain_pem())
        swapped.set()
        await client
        out["long_running"] = await long_running.echo()
        await long_running.release()
        out["generation"] = node.certificates.tls.generation if node.certificates.tls else None
        out["old"], out["new"] = old_serial, renewed.certificate.serial_number
    out["statuses"], out["serials"] = statuses, serials
    return out


def test_rotation_under_load_loses_nothing(
    site: Site, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="dicomtls"):
        out = asyncio.run(_rotation(site, tmp_path))
    statuses, serials = out["statuses"], out["serials"]
    assert isinstance(statuses, list) and isinstance(serials, list)
    assert statuses and set(statuses) == {0}  # every store succeeded, across the swap
    assert out["during_broken"] == (0, out["old"])  # the broken key was refused, old cert served
    assert serials[0] == out["old"] and serials[-1] == out["new"]
    assert set(serials) == {out["old"], out["new"]}
    assert out["long_running"] == 0  # an association from before the swap carried on
    assert out["generation"] == 1
    lines = [r.getMessage() for r in caplog.records]
    refused = [line for line in lines if "were refused, still using the previous ones" in line]
    # The broken key; then the new key beside the old certificate (they do not match yet).
    assert 1 <= len(refused) <= 2 and any("key" in line.lower() for line in refused)
    assert sum("changed on disk: reloaded" in line for line in lines) == 1


async def _expiring(site: Site, tmp: Path, lifetime: dt.timedelta) -> list[str]:
    soon = site.add(
        "short",
        "short.radiology.example",
        ["localhost"],
        ["127.0.0.1"],
        not_after=dt.datetime.now(dt.UTC) + lifetime,
    )
    assert soon.certificate.not_valid_after_utc > dt.datetime.now(dt.UTC)
    warned = asyncio.Event()
    messages: list[str] = []
    loop = asyncio.get_running_loop()

    class Catch(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if "expires in" in record.getMessage():
                messages.append(record.getMessage())
                loop.call_soon_threadsafe(warned.set)

    handler = Catch(logging.WARNING)
    logging.getLogger("dicomtls").addHandler(handler)
    try:
        async with running(site, tmp / "store", tls=site.settings("short")):
            await asyncio.wait_for(warned.wait(), 20)
    finally:
        logging.getLogger("dicomtls").removeHandler(handler)
    return messages


def test_expiry_within_30_days_is_warned_at_start(site: Site, tmp_path: Path) -> None:
    messages = asyncio.run(_expiring(site, tmp_path, dt.timedelta(days=10)))
    assert len(messages) == 1
    assert "expires in 9.9 days" in messages[0] or "expires in 10.0 days" in messages[0]
    assert "short.radiology.example" in messages[0]


def test_expiry_warning_fires_on_the_day_without_a_restart(site: Site, tmp_path: Path) -> None:
    # Due 30 days and 2 s from now: nothing at start, the warning when the moment comes.
    messages = asyncio.run(_expiring(site, tmp_path, dt.timedelta(days=30, seconds=2)))
    assert len(messages) == 1 and "expires in 30.0 days" in messages[0]


async def _crl_running_out(site: Site, tmp: Path) -> dict[str, object]:
    """A node whose CRL reaches its next update eight seconds after it is written (the node
    starts well within that, even on a busy machine)."""
    crl = site.directory / "crl.pem"
    crl.write_bytes(site.ca.crl([], next_update=dt.timedelta(seconds=8)))
    said: list[str] = []
    expired = asyncio.Event()
    loop = asyncio.get_running_loop()

    class Catch(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if "the CRL of" in record.getMessage():
                said.append(record.getMessage())
                if "expired on" in record.getMessage():
                    loop.call_soon_threadsafe(expired.set)

    seen: list[str] = []

    def on_verify(ok: bool, cert: CertificateInfo, error: VerifyError) -> bool:
        seen.append(error.name)
        return ok

    handler = Catch(logging.WARNING)
    logging.getLogger("dicomtls").addHandler(handler)
    out: dict[str, object] = {"said": said, "seen": seen}
    try:
        tls = site.settings("pacs", crl_files=crl, on_verify=on_verify)
        async with running(site, tmp / "store", tls=tls, metrics_port=0) as node:
            out["at_start"] = list(said)
            assert node.metrics_server is not None
            out["metrics"] = await asyncio.to_thread(scrape, node.metrics_server)
            await asyncio.wait_for(expired.wait(), 20)
            try:
                async with await connect_as(site, node, "ct1", "CT1") as assoc:
                    out["after"] = await assoc.echo()
            except (TLSHandshakeError, AssociationError, ConnectionError) as exc:
                out["after"] = exc
    finally:
        logging.getLogger("dicomtls").removeHandler(handler)
    return out


def test_a_crl_running_out_is_warned_ahead_and_on_the_moment(site: Site, tmp_path: Path) -> None:
    """Past its next update a CRL refuses every peer its CA issued: the node says so before,
    and again when it happens, without a restart."""
    out = asyncio.run(_crl_running_out(site, tmp_path))
    at_start, said = out["at_start"], out["said"]
    assert isinstance(at_start, list) and isinstance(said, list)
    assert len(at_start) == 1 and "reaches its next update in" in at_start[0]
    assert len(said) == 2 and "expired on" in said[1] and "CRL_HAS_EXPIRED" in said[1]
    after = out["after"]
    assert isinstance(after, TLSHandshakeError)  # what the warning said: the peer is refused
    assert "CRL_HAS_EXPIRED" in out["seen"]  # type: ignore[operator]
    # OpenSSL tells the client "certificate_expired"; its own certificate is valid, so the
    # client is told where to look instead of "renew our certificate".
    assert after.alert == "certificate_expired"
    assert after.hint is not None and "the CRL it checks ours against" in after.hint
    # ... and for monitoring: days until the CRL's next update, and the CA's end, at scrape time.
    samples = out["metrics"]
    assert isinstance(samples, dict)
    site_ca = "CN = Radiology Site CA, O = dicomtls test PKI"
    crl_days = value(samples, "dicomtls_trust_expiry_days", kind="crl", subject=site_ca)
    assert 0 < crl_days < 9 / 86400
    assert value(samples, "dicomtls_trust_expiry_days", kind="ca", subject=site_ca) > 300
