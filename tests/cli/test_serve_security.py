"""``dicomtls serve`` as an operator runs it: access rules and audit from node.toml, metrics,
certificate rotation on SIGHUP, and one-line errors for configuration mistakes."""

from __future__ import annotations

import json
import os
import signal
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from lxml import etree

from ..audit.conftest import SCHEMA
from ..node.site import Site, make_site
from .test_node_cli import Node, _free_port, run


@pytest.fixture
def site(tmp_path: Path) -> Site:
    return make_site(tmp_path / "pki")


def _client(site: Site, name: str, ae: str) -> list[str]:
    return ["--ae-title", ae, "--called-ae", "PACS", *site.tls_args(name)]


def _config(site: Site, tmp: Path, port: int, extra: str = "") -> Path:
    chain, key = site.files("pacs")
    path = tmp / "node.toml"
    path.write_text(f"""
port = {port}
ae_title = "PACS"
store = "{tmp / "store"}"
tls_cert = "{chain}"
tls_key = "{key}"
ca = ["{site.ca_file}"]
{extra}
""")
    return path


def wait_for_line(node: Node, text: str, timeout: float = 20) -> str:
    """The node's next log line containing ``text`` (see ``Node.wait_for``)."""
    return node.wait_for(text, timeout)


@pytest.fixture
def secured(site: Site, tmp_path: Path) -> Iterator[tuple[Node, int]]:
    port, metrics = _free_port(), _free_port()
    config = _config(
        site,
        tmp_path,
        port,
        f"""
audit = ["file:{tmp_path / "audit.log"}"]
metrics_port = {metrics}

[[access.rule]]
name = "ct-scanner"
ae_title = "CT1"
certificate = {{ cn = "ct1.radiology.example" }}
services = ["echo"]
""",
    )
    node = Node(tmp_path, "--config", str(config), "--host", "127.0.0.1", port=port)
    yield node, metrics
    if node.proc.poll() is None:
        node.stop()


def test_access_rules_audit_and_metrics_from_node_toml(
    secured: tuple[Node, int], site: Site, tmp_path: Path
) -> None:
    node, metrics_port = secured
    assert any(
        f"metrics on http://127.0.0.1:{metrics_port}/metrics" in line for line in node.output
    )
    ok = run("echo", "127.0.0.1", str(node.port), *_client(site, "ct1", "CT1"), cwd=tmp_path)
    assert ok.returncode == 0, ok.stderr
    impostor = run(
        "echo", "127.0.0.1", str(node.port), *_client(site, "intruder", "CT1"), cwd=tmp_path
    )
    assert impostor.returncode == 1
    assert "CALLING_AE_NOT_RECOGNIZED" in impostor.stderr and len(impostor.stderr.splitlines()) == 1
    sample = tmp_path / "in" / "x.dcm"
    sample.parent.mkdir()
    from ..node.test_storage import _make_file

    _make_file(sample, pixels=1000)
    store = run(
        "store",
        "127.0.0.1",
        str(node.port),
        str(sample),
        *_client(site, "ct1", "CT1"),
        cwd=tmp_path,
    )
    assert store.returncode == 1  # the rule grants echo only

    with urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=10) as response:
        metrics = response.read().decode()
    assert 'dicomtls_associations_total{reason="access-policy",result="rejected"} 1.0' in metrics
    assert "dicomtls_certificate_expiry_days" in metrics

    log = node.stop()
    assert "rule 'ct-scanner' requires CN 'ct1.radiology.example'" in log
    assert "rule 'ct-scanner' does not grant" in log
    schema = etree.RelaxNG(etree.parse(str(SCHEMA)))
    lines = (tmp_path / "audit.log").read_text().splitlines()
    events = []
    for line in lines:
        root = etree.fromstring(line.encode())
        assert schema.validate(root), schema.error_log
        ident = root.find("EventIdentification")
        assert ident is not None
        event = ident.find("EventID")
        kind = ident.find("EventTypeCode")
        events.append(
            (
                event.get("csd-code") if event is not None else None,
                kind.get("csd-code") if kind is not None else None,
            )
        )
    assert events[0] == ("110100", "110120") and events[-1] == ("110100", "110121")
    assert ("110113", "110132") in events  # the impostor, refused by the policy


def _served_serial(site: Site, node: Node, tmp: Path) -> str:
    done = run("echo", "127.0.0.1", str(node.port), *_client(site, "ct1", "CT1"), "--json", cwd=tmp)
    assert done.returncode == 0, done.stderr
    chain = json.loads(done.stdout)["tls"]["peer_chain"]
    return str(chain[0]["serial"])


def _hex(serial: int) -> str:
    raw = f"{serial:x}"
    raw = raw if len(raw) % 2 == 0 else "0" + raw
    return ":".join(raw[i : i + 2] for i in range(0, len(raw), 2))


def test_sighup_rotates_the_certificate_and_refuses_a_broken_one(
    site: Site, tmp_path: Path
) -> None:
    port = _free_port()
    node = Node(
        tmp_path, "--config", str(_config(site, tmp_path, port)), "--host", "127.0.0.1", port=port
    )
    try:
        assert _served_serial(site, node, tmp_path) == _hex(
            site.identities["pacs"].certificate.serial_number
        )
        chain, key = site.files("pacs")
        renewed = site.ca.issue("pacs.radiology.example", dns=["localhost"], ips=["127.0.0.1"])
        # Overwritten in place, same size class, key first: SIGHUP is what makes it count.
        key.write_bytes(renewed.private_key_pem())
        chain.write_bytes(renewed.cert_chain_pem())
        node.proc.send_signal(signal.SIGHUP)
        wait_for_line(node, "reload requested: reloaded")
        assert _served_serial(site, node, tmp_path) == _hex(renewed.certificate.serial_number)

        chain.write_text("-----BEGIN CERTIFICATE-----\ntruncated\n")
        node.proc.send_signal(signal.SIGHUP)
        line = wait_for_line(node, "were refused, still using the previous ones")
        assert str(chain) in line
        assert _served_serial(site, node, tmp_path) == _hex(renewed.certificate.serial_number)
        assert node.proc.poll() is None
    finally:
        node.stop()


@pytest.mark.parametrize(
    ("extra", "args", "message"),
    [
        (
            '[[access.rule]]\nname = "ct"\nae_title = "CT1"\ncertificate = { serial = "1" }',
            (),
            "access rule 'ct': certificate key must be cn, san or fingerprint",
        ),
        ('[access]\nunknown_ae = "sometimes"', (), "access.unknown_ae must be 'allow' or 'reject'"),
        ("", ("--audit", "syslog://somewhere"), "unknown scheme 'syslog'"),
        ("", ("--audit", "tls://127.0.0.1:6514"), "tls needs ca=PATH"),
    ],
)
def test_configuration_mistakes_are_one_line(
    site: Site, tmp_path: Path, extra: str, args: tuple[str, ...], message: str
) -> None:
    config = _config(site, tmp_path, _free_port(), extra)
    done = run("serve", "--config", str(config), *args, cwd=tmp_path, timeout=30)
    assert done.returncode == 2, done.stdout + done.stderr
    errors = [line for line in done.stderr.splitlines() if line.startswith("dicomtls: error")]
    assert len(errors) == 1 and message in errors[0], done.stderr
    assert "Traceback" not in done.stderr
    assert not os.path.exists(tmp_path / "store" / "index.sqlite")  # refused before starting


def test_max_per_peer_from_the_command_line(site: Site, tmp_path: Path) -> None:
    """A site behind NAT raises the per-address cap; here it is lowered to 1 and enforced."""
    import asyncio

    from dicomtls.net.association import AssociationError, associate

    port = _free_port()
    config = _config(site, tmp_path, port)
    node = Node(
        tmp_path, "--config", str(config), "--host", "127.0.0.1", "--max-per-peer", "1", port=port
    )

    async def two_at_once() -> str:
        settings = site.settings("ct1")
        async with await associate(
            "127.0.0.1", port, settings, calling_ae="CT1", called_ae="PACS"
        ) as first:
            assert await first.echo() == 0
            try:
                await associate("127.0.0.1", port, settings, calling_ae="CT1", called_ae="PACS")
            except AssociationError as exc:
                return str(exc)
        return "second association accepted"

    try:
        refused = asyncio.run(two_at_once())
        assert "TRANSIENT" in refused and "LOCAL_LIMIT_EXCEEDED" in refused
        assert "1 associations already active from 127.0.0.1" in node.wait_for("rejected")
    finally:
        node.stop()
