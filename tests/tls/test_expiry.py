"""What in a node's TLS files expires, and when each warning is due: real certificates and CRLs
from our PKI, judged at chosen moments."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from dicomtls.pki import CertificateAuthority
from dicomtls.tls.expiry import ExpiryWatch, deadlines
from dicomtls.tls.settings import TLSSettings

DAY = dt.timedelta(days=1)


def _settings(
    directory: Path, *, ca_days: int = 3650, crl: dt.timedelta | None = None
) -> TLSSettings:
    directory.mkdir(parents=True, exist_ok=True)
    ca = CertificateAuthority.create("Hospital CA", valid_days=ca_days)
    ca.write_cert(directory / "ca.pem")
    files = ca.issue("pacs").write(directory, "pacs")
    crl_files = []
    if crl is not None:
        (directory / "crl.pem").write_bytes(ca.crl([], next_update=crl))
        crl_files.append(directory / "crl.pem")
    return TLSSettings(
        certificate=files.chain,
        private_key=files.key,
        ca_files=directory / "ca.pem",
        crl_files=crl_files,
    )


def _crl_end(settings: TLSSettings) -> dt.datetime:
    end = settings.trust.crls[0].next_update_utc
    assert end is not None
    return end


def test_a_monthly_crl_warns_three_days_ahead_then_once_expired(tmp_path: Path) -> None:
    settings = _settings(tmp_path, crl=30 * DAY)
    end = _crl_end(settings)
    watch = ExpiryWatch()
    assert watch.check(deadlines(settings), end - 4 * DAY) == []
    assert watch.next_check(deadlines(settings), end - 4 * DAY) == end - 3 * DAY
    (soon,) = watch.check(deadlines(settings), end - 2 * DAY)
    assert soon.startswith(
        "the CRL of 'CN = Hospital CA, O = dicomtls test PKI' reaches its next update in 2.0 days"
    )
    assert "CRL_HAS_EXPIRED" in soon
    assert watch.check(deadlines(settings), end - DAY) == []  # said once
    assert watch.next_check(deadlines(settings), end - DAY) == end + dt.timedelta(seconds=1)
    assert watch.check(deadlines(settings), end) == []  # OpenSSL still takes the last second
    (expired,) = watch.check(deadlines(settings), end + dt.timedelta(seconds=1))
    assert "expired on" in expired and "refused (CRL_HAS_EXPIRED)" in expired
    assert watch.check(deadlines(settings), end + DAY) == []
    assert (
        watch.next_check(deadlines(settings), end + DAY) is not None
    )  # the certificates' still ahead


def test_a_weekly_crl_warns_a_quarter_of_its_life_ahead(tmp_path: Path) -> None:
    settings = _settings(tmp_path, crl=7 * DAY)
    end, last = _crl_end(settings), settings.trust.crls[0].last_update_utc
    assert ExpiryWatch.next_check(deadlines(settings), end - 3 * DAY) == end - (end - last) / 4


def test_a_fresh_crl_is_judged_afresh(tmp_path: Path) -> None:
    watch = ExpiryWatch()
    old = _settings(tmp_path / "old", crl=DAY)
    assert len(watch.check(deadlines(old), _crl_end(old) - dt.timedelta(hours=1))) == 1
    fresh = _settings(tmp_path / "fresh", crl=30 * DAY)
    assert watch.check(deadlines(fresh), _crl_end(old) - dt.timedelta(hours=1)) == []


def test_a_trusted_ca_and_our_certificate_expiring(tmp_path: Path) -> None:
    settings = _settings(tmp_path, ca_days=10)
    now = dt.datetime.now(dt.UTC)
    warnings = ExpiryWatch().check(deadlines(settings), now)
    assert len(warnings) == 1, warnings  # our certificate has a year
    assert warnings[0].startswith("the trusted CA 'CN = Hospital CA, O = dicomtls test PKI'")
    assert "expires in 10.0 days" in warnings[0] or "expires in 9.9 days" in warnings[0]
    ours = settings.identity
    assert ours is not None
    later = ours.certificate.not_valid_after_utc - 2 * DAY
    said = ExpiryWatch().check(deadlines(settings), later)
    assert any(
        w.startswith("our certificate 'O=dicomtls test PKI,CN=pacs' expires in 2.0") for w in said
    ), said
