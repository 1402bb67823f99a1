"""The README's storage example runs as written: a person copying it gets what it promises."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pydicom

from .node.test_storage import _make_file

README = Path(__file__).resolve().parents[1] / "README.md"


def _python_blocks_after(heading: str) -> list[str]:
    text = README.read_text()
    section = text[text.index(heading) :]
    section = section[: section.index("\n## ", 1)]
    return re.findall(r"```python\n(.*?)```", section, flags=re.S)


def test_storage_example_runs(tmp_path: Path) -> None:
    (block,) = _python_blocks_after("## A storage SCP and an SCU")
    dicomtls = Path(sys.executable).with_name("dicomtls")
    made = subprocess.run([dicomtls, "pki", "init", "pki"], cwd=tmp_path, capture_output=True, text=True)
    assert made.returncode == 0, made.stderr  # the test PKI as the library section says to make it
    folder = tmp_path / "folder" / "study"
    folder.mkdir(parents=True)
    for i in range(3):
        _make_file(folder / f"img{i}.dcm", pixels=40_000)
    done = subprocess.run(
        [sys.executable, "-c", block], cwd=tmp_path, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert sorted(done.stdout.splitlines()) == [f"img{i}.dcm 0" for i in range(3)]  # as answered
    received = list((tmp_path / "received").glob("*.dcm"))
    assert len(received) == 3
    assert {str(pydicom.dcmread(p).PatientName) for p in received} == {"Doe^Jane"}


def test_the_complete_node_toml_is_a_valid_access_policy() -> None:
    """The access example in the README parses, and decides as its comments say."""
    import tomllib

    from dicomtls.dimse.sop_classes import Service
    from dicomtls.node.policy import AccessPolicy

    text = README.read_text()
    section = text[text.index("## Who may connect") :]
    block = re.findall(r"```toml\n(.*?)```", section, flags=re.S)[0]
    config = tomllib.loads(block)
    destinations = [d.split("=")[0] for d in config["move_destinations"]]
    policy = AccessPolicy.from_config(config["access"], destinations)
    assert [r.name for r in policy.rules] == ["ct-scanner", "viewer", "reading-room"]
    assert policy.rules[0].services == {Service.ECHO, Service.STORE}
    assert policy.rules[1].move_destinations == {"VIEWER"}
    assert len(config["audit"]) == 2 and config["metrics_port"] == 9102
