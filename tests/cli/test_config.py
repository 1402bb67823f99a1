"""``serve``'s options and ``--config`` keys: one table, one precedence, mistakes named by key and file."""

from __future__ import annotations

import json
import socket
import tomllib
from pathlib import Path

import pytest

from dicomtls.cli.config import SERVE
from dicomtls.cli.serve import serve

from .test_node_cli import Node, _free_port, run

#: A value for every key, none of them its default: a key added to the table must be added here.
SAMPLE = {
    "store": "sample-store",
    "host": "127.0.0.1",
    "port": 11113,
    "ae_title": "SAMPLE",
    "accept_any_called_ae": True,
    "max_associations": 7,
    "max_per_peer": 3,
    "max_pending_handshakes": 9,
    "max_pending_per_peer": 4,
    "move_destinations": ["VIEWER=10.0.0.5:2762"],
    "fsync": "never",
    "explain": True,
    "audit": ["file:audit.log"],
    "metrics_port": 9102,
    "metrics_host": "127.0.0.2",
    "handshake_timeout": 5.5,
    "artim_timeout": 6.5,
    "idle_timeout": 7.5,
    "shutdown_grace": 8.5,
    "file_mode": "0640",
    "min_free_space": "2GiB",
    "log_level": "warning",
    "log_file": "node.log",
    "index": "postgresql://dicom@db/pacs",
    "objects": "s3://pacs?endpoint=http://s3:8333",
    "proxy_protocol": True,
    "trusted_proxies": ["10.0.0.5/32"],
    "proxy_header_timeout": 3.0,
    "drain_seconds": 5.0,
    "janitor_interval": 300.0,
    "tls_cert": "pki/server-chain.pem",
    "tls_key": "pki/server.key",
    "key_password": "secret",
    "ca": ["pki/ca.pem"],
    "crl": ["pki/ca.pem"],
    "verify": "peer",
    "profile": "bcp195",
    "check_hostname": True,
    "no_tls": True,
}


def _toml(values: dict[str, object]) -> str:
    from dicomtls.cli.config import toml_value

    return "".join(f"{key} = {toml_value(value)}\n" for key, value in values.items())


def _sources(printed: str) -> dict[str, str]:
    """key -> where --print-config says its value came from."""
    found = {}
    for line in printed.splitlines():
        if line.startswith("["):
            break  # the access rules: not settings
        text, _, source = line.partition("  # ")
        if " =" in text:
            found[text.lstrip("# ").split(" =")[0]] = source.strip()
    return found


def test_every_option_is_a_key_and_every_key_an_option() -> None:
    params = {p.name for p in serve.params} - {"config_file", "print_config", "as_json", "help"}
    assert params == {s.key for s in SERVE}
    assert set(SAMPLE) == {s.key for s in SERVE}
    options = {option for p in serve.params for option in p.opts}
    assert {s.name for s in SERVE} <= options


def test_command_line_over_file_over_default(tmp_path: Path) -> None:
    assert run("pki", "init", "pki", cwd=tmp_path).returncode == 0
    (tmp_path / "node.toml").write_text(_toml(SAMPLE))
    from_file = run("serve", "--config", "node.toml", "--print-config", cwd=tmp_path)
    assert from_file.returncode == 0, from_file.stderr
    sources = _sources(from_file.stdout)
    assert set(sources) == set(SAMPLE)
    assert all(
        source.startswith("node.toml") for k, source in sources.items() if k != "key_password"
    )
    assert sources["key_password"] == "set (node.toml); never shown"
    assert "secret" not in from_file.stdout  # a password is never shown
    shown = tomllib.loads(from_file.stdout)
    assert {k: v for k, v in shown.items() if k in SAMPLE} == {
        k: v for k, v in SAMPLE.items() if k != "key_password"
    }

    given = [
        "--port",
        "11114",
        "--store",
        "cli-store",
        "--ca",
        "pki/server-chain.pem",
        "--check-hostname",
        "--key-password",
        "other",
    ]
    both = run("serve", "--config", "node.toml", *given, "--print-config", cwd=tmp_path)
    sources = _sources(both.stdout)
    assert (sources["port"], sources["store"], sources["ca"]) == ("--port", "--store", "--ca")
    assert (
        sources["host"] == "node.toml"
        and sources["key_password"] == "set (--key-password); never shown"
    )
    values = tomllib.loads(both.stdout)
    assert (values["port"], values["store"], values["ca"]) == (
        11114,
        "cli-store",
        ["pki/server-chain.pem"],
    )

    neither = run("serve", "--print-config", cwd=tmp_path)
    defaults = tomllib.loads(neither.stdout)
    assert (defaults["port"], defaults["host"], defaults["store"]) == (
        2762,
        "0.0.0.0",
        "dicom-store",
    )
    assert all(s.startswith(("default", "not set")) for s in _sources(neither.stdout).values())


def test_the_file_s_host_is_where_the_node_listens_and_the_command_line_s_store_what_it_uses(
    tmp_path: Path,
) -> None:
    port = _free_port()
    (tmp_path / "node.toml").write_text(
        f'host = "127.0.0.1"\nport = {port}\nstore = "file-store"\n'
    )
    node = Node(tmp_path, "--config", "node.toml", "--store", "cli-store", port=port)
    try:
        assert f"listening on 127.0.0.1:{port}" in "".join(node.output)
        with socket.socket() as elsewhere:  # bound to 127.0.0.1 alone, not to every address
            assert elsewhere.connect_ex(("127.0.0.2", port)) != 0
        echo = run(
            "echo",
            "127.0.0.1",
            str(port),
            "--ca",
            "cli-store/pki/ca.pem",
            "--tls-cert",
            "cli-store/pki/client-chain.pem",
            "--tls-key",
            "cli-store/pki/client.key",
            cwd=tmp_path,
        )
        assert echo.returncode == 0, echo.stderr
    finally:
        node.stop()
    assert (tmp_path / "cli-store" / "index.sqlite").exists()
    assert not (tmp_path / "file-store").exists()


@pytest.mark.parametrize(
    ("toml", "said"),
    [
        (
            'ae_tittle = "PACS"\n',
            "node.toml: unknown key 'ae_tittle'. Hint: did you mean 'ae_title'?",
        ),
        (
            '[acess]\nunknown_ae = "reject"\n',
            "node.toml: unknown key 'acess'. Hint: did you mean 'access'?",
        ),
        (
            "colour = 3\n",
            "node.toml: unknown key 'colour'. Hint: dicomtls serve --help lists every key",
        ),
        ('port = "eleven"\n', 'node.toml: port = "eleven": give a whole number from 0 to 65535'),
        ("max_per_peer = 0\n", "node.toml: max_per_peer = 0: give a whole number >= 1"),
        (
            'idle_timeout = "soon"\n',
            'node.toml: idle_timeout = "soon": give a number of seconds > 0',
        ),
        (
            'accept_any_called_ae = "yes"\n',
            'node.toml: accept_any_called_ae = "yes": give true or false',
        ),
        ("ca = 3\n", "node.toml: ca = 3: give an array of strings"),
        (  # the node started with it, answering to a title no peer can send (16 at most)
            'ae_title = "RADIOLOGY-ARCHIVE-1"\n',
            'node.toml: ae_title = "RADIOLOGY-ARCHIVE-1": give 1 to 16 printable ASCII '
            "characters, no backslash (a DICOM AE title)",
        ),
        (
            'fsync = "sometimes"\n',
            "node.toml: fsync = \"sometimes\": give one of 'always', 'never'",
        ),
        (
            'verify = "peer,bogus"\n',
            "node.toml: verify = \"peer,bogus\": unknown verify flag 'bogus'",
        ),
        (
            'move_destinations = ["VIEWER"]\n',
            'node.toml: move_destinations = ["VIEWER"]: give AE=HOST:PORT',
        ),
        ('tls_cert = "nowhere.pem"\n', "node.toml: tls_cert = 'nowhere.pem': file not found"),
        (
            'min_free_space = "150%"\n',
            'node.toml: min_free_space = "150%": give a size or a share of the disk, e.g. "1GiB"',
        ),
        ("port = = 3\n", "node.toml: not valid TOML: "),
        (
            '[access]\nunknown_ae = "maybe"\n',
            "node.toml: access.unknown_ae must be 'allow' or 'reject'",
        ),
    ],
)
def test_a_mistake_in_the_file_names_key_and_file(tmp_path: Path, toml: str, said: str) -> None:
    (tmp_path / "node.toml").write_text(toml)
    done = run("serve", "--config", "node.toml", cwd=tmp_path)
    assert done.returncode == 2, done.stderr
    assert done.stderr.count("\n") == 1 and done.stderr.startswith(f"dicomtls: error: {said}"), (
        done.stderr
    )
    assert not (tmp_path / "dicom-store").exists()  # refused before anything was made
    as_json = run("serve", "--config", "node.toml", "--json", cwd=tmp_path)
    answer = json.loads(as_json.stdout)
    assert as_json.returncode == 2 and answer["code"] == "CONFIG" and "node.toml" in answer["error"]


def test_a_mistake_on_the_command_line_names_the_option(tmp_path: Path) -> None:
    audit = run("serve", "--audit", "syslog://collector", cwd=tmp_path)
    assert audit.returncode == 2
    assert audit.stderr.startswith(
        "dicomtls: error: --audit syslog://collector: unknown scheme 'syslog'"
    )
    title = run("serve", "--ae-title", "PACS\\1", cwd=tmp_path)
    assert title.returncode == 2 and not (tmp_path / "dicom-store").exists()
    assert title.stderr == (
        "dicomtls: error: --ae-title PACS\\1: give 1 to 16 printable ASCII characters, "
        "no backslash (a DICOM AE title)\n"
    )
    destination = run("serve", "--move-destination", "VIEWER", cwd=tmp_path)
    assert destination.returncode == 2
    assert destination.stderr == (
        "dicomtls: error: --move-destination VIEWER: give AE=HOST:PORT, e.g. VIEWER=10.0.0.5:2762\n"
    )


def test_print_config_as_json(tmp_path: Path) -> None:
    (tmp_path / "node.toml").write_text('port = 11115\n[access]\nunknown_ae = "reject"\n')
    done = run(
        "serve",
        "--config",
        "node.toml",
        "--ae-title",
        "JSON",
        "--print-config",
        "--json",
        cwd=tmp_path,
    )
    shown = json.loads(done.stdout)
    assert shown["config"]["port"] == 11115 and shown["sources"]["port"] == "node.toml"
    assert shown["config"]["ae_title"] == "JSON" and shown["sources"]["ae_title"] == "--ae-title"
    assert shown["config"]["access"] == {"unknown_ae": "reject"}
    assert "key_password" not in shown["config"]


def test_the_spelt_out_defaults_are_the_librarys() -> None:
    """config.py writes the library's defaults as numbers (so --help loads no network stack);
    they must stay the ones the library uses."""
    from dataclasses import asdict

    from dicomtls.cli.config import DEFAULT_HANDSHAKE_TIMEOUT, DEFAULT_LIMITS
    from dicomtls.net.scp import Limits
    from dicomtls.tls.settings import TLSSettings

    library = asdict(Limits())
    assert {key: library[key] for key in DEFAULT_LIMITS} == DEFAULT_LIMITS
    assert (
        TLSSettings.__dataclass_fields__["handshake_timeout"].default == DEFAULT_HANDSHAKE_TIMEOUT
    )
    assert {s.key: s.default for s in SERVE if s.key in DEFAULT_LIMITS} == DEFAULT_LIMITS
