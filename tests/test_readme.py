"""README.md runs as written: a new user's first hour, walked top to bottom on a fresh copy.

Every fenced block of the README is claimed here (:data:`WALKED`), and
``test_every_block_is_walked`` fails for a block nobody runs, so the README cannot drift
from the code again. The walk copies the repository (the files git knows, committed or
not) into a temporary folder, runs ``bash scripts/demo.sh`` there, starts the quick
start's node from its block, and runs against it the client block, the library
examples, the configuration blocks and the doctor's transcript; each sample output is
compared with what the command prints now. Only ports are substituted (2762 and 11112
become free ones), and what the text says to make first is made (``./studies/``,
``node.toml``, the modality's certificate).
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pydicom
import pytest

from dicomtls.cli.demo import make_ct

from .live_lines import LiveLines

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
#: Ports the README names -> the test's free ones (a machine running tests in parallel
#: cannot promise 2762).
PORTS = ("2762", "11112")

pytestmark = pytest.mark.timeout(900)  # pip in a fresh venv, on a shared machine


@dataclass(frozen=True)
class Block:
    section: str
    """The ``## `` heading the block is under."""
    index: int
    """Its place among the section's blocks, from 0."""
    lang: str
    text: str


def blocks() -> list[Block]:
    """The README's fenced blocks, in order."""
    found: list[Block] = []
    section, count = "", 0
    lines = iter(README.read_text().splitlines(keepends=True))
    for line in lines:
        if line.startswith("## "):
            section, count = line[3:].strip(), 0
        elif line.startswith("```"):
            body = []
            for inner in lines:
                if inner.startswith("```"):
                    break
                body.append(inner)
            found.append(Block(section, count, line[3:].strip(), "".join(body)))
            count += 1
    return found


#: (section heading, block index) -> the test that runs it.
WALKED = {
    ("Two commands", 0): "test_the_demo_block",
    ("Two commands", 1): "test_the_test_block_is_what_ci_runs",
    ("First secure node in a minute", 0): "walk (the node every later block talks to)",
    ("First secure node in a minute", 1): "test_the_quick_start_clients",
    ("Configuration: options and `node.toml`", 0): "test_the_configuration_blocks",
    ("Configuration: options and `node.toml`", 1): "test_the_configuration_blocks",
    ("Who may connect, and a record of everything", 0): "test_the_complete_node_toml",
    ("Why does my TLS connection fail?", 0): "test_the_doctor_transcript",
    ("Why does my TLS connection fail?", 1): "test_the_doctor_transcript",
    ("Why does my TLS connection fail?", 2): (
        "tests/tls/test_client_hello.py::test_the_readme_shows_the_line_the_node_logs"
    ),
    ("The library: `import dicomtls`", 0): "test_the_library_examples",
    ("The library: `import dicomtls`", 1): "test_the_library_examples",
    ("A storage SCP and an SCU sending a folder to it", 0): "test_the_storage_example",
    ("The verify callback", 0): "test_the_verify_callback_example",
    ("The verify callback", 1): "test_the_demo_samples",
    ("The verify callback", 2): "tests/tls/test_names.py::test_the_readme_shows_both_forms",
    ("The verify callback", 3): "test_the_demo_samples",
    ("The verify callback", 4): "test_the_demo_samples",
    ("Layout", 0): "test_the_layout",
}


def block(section: str, index: int = 0) -> Block:
    assert (section, index) in WALKED, f"add ({section!r}, {index}) to WALKED"
    return next(b for b in blocks() if (b.section, b.index) == (section, index))


def section_text(heading: str) -> str:
    text = README.read_text()
    start = text.index(f"## {heading}")
    end = text.find("\n## ", start + 1)
    return text[start : end if end > 0 else None]


def test_every_block_is_walked() -> None:
    """A block added to the README without a test here fails: say how it is run."""
    found = {(b.section, b.index) for b in blocks()}
    assert found - WALKED.keys() == set(), "README blocks no test runs"
    assert WALKED.keys() - found == set(), "WALKED names blocks the README no longer has"


# -- the walk ----------------------------------------------------------------------------------


def _free_port() -> str:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return str(probe.getsockname()[1])


def _fresh_copy(destination: Path) -> None:
    """What a clone has: every file git knows (committed or not yet), nothing it ignores."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        capture_output=True,
        check=True,
    ).stdout
    for name in filter(None, listed.decode().split("\0")):
        source = ROOT / name
        if source.is_file():  # listed but deleted in the work tree: not in a clone either
            (destination / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, destination / name)


class Process:
    """A long-running command from a block (a node), its output read as it comes."""

    def __init__(self, text: str, cwd: Path, env: dict[str, str]) -> None:
        self.proc = subprocess.Popen(
            ["bash", "-c", text],
            cwd=cwd,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
        assert self.proc.stdout is not None
        self._live = LiveLines(self.proc.stdout)
        self.lines, self._changed = self._live.lines, self._live.changed

    def wait_for(self, text: str, timeout: float = 300) -> str:
        with self._changed:
            found = self._changed.wait_for(
                lambda: any(text in line for line in self.lines) or self.proc.poll() is not None,
                timeout,
            )
            lines = [line for line in self.lines if text in line]
            assert found and lines, f"no line with {text!r}:\n" + "".join(self.lines)
            return lines[0]

    def output(self) -> str:
        with self._changed:
            return "".join(self.lines)

    def stop(self, signum: int = signal.SIGINT) -> int:
        """As a person stops it: Ctrl-C reaches the whole foreground process group."""
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signum)
        code = self.proc.wait(timeout=60)
        self._live.join(timeout=10)
        return code


@dataclass
class Walk:
    root: Path
    env: dict[str, str]
    """A terminal's; once the demo made ``.venv``, with it activated (as the quick start says)."""
    ports: dict[str, str]
    demo: subprocess.CompletedProcess[str] | None = None
    node: Process | None = None
    others: list[Process] = field(default_factory=list)

    def ported(self, text: str) -> str:
        for readme_port, ours in self.ports.items():
            text = re.sub(rf"(?<![\d.]){readme_port}(?!\d)", ours, text)
        return text

    def unported(self, text: str) -> str:
        for readme_port, ours in self.ports.items():
            text = re.sub(rf"(?<![\d.]){ours}(?!\d)", readme_port, text)
        return text

    def sh(self, text: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
        """Run ``text`` as bash does in a terminal, stopping at the first failing line."""
        return subprocess.run(
            ["bash", "-e", "-c", self.ported(text)],
            cwd=cwd or self.root,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=300,
        )

    def python(self, code: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(self.root / ".venv" / "bin" / "python"), "-c", self.ported(code)],
            cwd=self.root,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=300,
        )


def _user_env() -> dict[str, str]:
    """A terminal's environment: no venv of the test run active, tables 100 columns wide."""
    ours = str(Path(sys.executable).parent)
    path = [p for p in os.environ.get("PATH", "").split(os.pathsep) if p and p != ours]
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONHOME")}
    return {**env, "PATH": os.pathsep.join(path), "COLUMNS": "100"}


@pytest.fixture(scope="module")
def walk(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Walk]:
    root = tmp_path_factory.mktemp("fresh") / "dicomtls"
    _fresh_copy(root)
    walk = Walk(root, _user_env(), {p: _free_port() for p in PORTS})
    walk.demo = walk.sh(block("Two commands", 0).text)
    venv = root / ".venv"
    walk.env = {
        **walk.env,
        "VIRTUAL_ENV": str(venv),
        "PATH": f"{venv / 'bin'}{os.pathsep}{walk.env['PATH']}",
    }
    # The quick start's node, from its block: set-up, then `dicomtls serve` in the foreground.
    walk.node = Process(walk.ported(block("First secure node in a minute", 0).text), root, walk.env)
    try:
        walk.node.wait_for("listening on")
        studies = root / "studies"  # "a folder of your DICOM files": Doe^Jane, study 1.2.3
        studies.mkdir()
        for number in (1, 2, 3):
            make_ct(studies / f"ct{number}.dcm", "Doe^Jane", "1.2.3", number)
        yield walk
    finally:
        for other in walk.others:
            other.stop(signal.SIGTERM)
        code = walk.node.stop(signal.SIGINT)  # Ctrl-C, as the README says
        assert code == 0 and "shutting down" in walk.node.output(), walk.node.output()


# -- Two commands ------------------------------------------------------------------------------


def test_the_demo_block(walk: Walk) -> None:
    """``bash scripts/demo.sh`` on a fresh copy: only dicomtls installed, the demo as expected,
    and no warning of ours on stderr (pip's own notes about this machine's indexes aside)."""
    demo = walk.demo
    assert demo is not None
    assert demo.returncode == 0, demo.stdout + demo.stderr
    assert "demo: all went as expected" in demo.stdout
    assert " dicomtls." not in demo.stderr and "Traceback" not in demo.stderr, demo.stderr
    venv = walk.root / ".venv" / "bin" / "python"
    extras = subprocess.run([str(venv), "-c", "import pytest"], capture_output=True)
    assert extras.returncode != 0  # the test extras are test.sh's
    assert not (walk.root / ".venv-sslyze").exists()


def test_the_test_block_is_what_ci_runs() -> None:
    """The test command cannot run inside its own run: CI runs it, exactly this line."""
    command = block("Two commands", 1).text.strip()
    assert command == "bash scripts/test.sh"
    assert command in (ROOT / ".ci" / "run").read_text().splitlines()
    script = (ROOT / "scripts" / "test.sh").read_text()
    assert "bash scripts/setup.sh\n" in script  # the whole set-up, not --no-tests
    assert all(tool in script for tool in ("ruff check", "mypy", "pytest"))


# -- First secure node ---------------------------------------------------------------------------


def test_the_quick_start_clients(walk: Walk) -> None:
    assert walk.node is not None
    started = walk.node.output()
    assert "created a local test PKI under dicom-store/pki" in started
    assert f"dicomtls echo localhost {walk.ports['2762']}" in started
    assert "Ctrl-C" in section_text("First secure node") and "SIGTERM" in section_text(
        "First secure node"
    )
    done = walk.sh(block("First secure node in a minute", 1).text)
    assert done.returncode == 0, done.stdout + done.stderr
    out = done.stdout
    assert "0x0000 success in" in out and "(success)" not in out
    assert "certificate at depth 0: OK" in out and "Negotiated secure link" in out
    assert re.search(r"stored \(Success\)\s+│\s+3 │", out), out
    assert "1 match(es) at study level" in out and "Doe^Jane" in out
    assert "C-GET: 0x0000 success; completed 3, failed 0" in out
    retrieved = sorted(p.name for p in (walk.root / "retrieved").iterdir())
    sent = sorted(
        f"{pydicom.dcmread(p).SOPInstanceUID}.dcm" for p in (walk.root / "studies").iterdir()
    )
    assert retrieved == sent  # the objects, and nothing else (no .incoming/, .spare/, *.part)
    assert done.stderr == "", done.stderr


# -- Configuration -----------------------------------------------------------------------------


def test_the_configuration_blocks(walk: Walk) -> None:
    """Save the TOML as node.toml; print its configuration; run it; talk to it."""
    (walk.root / "node.toml").write_text(
        walk.ported(block("Configuration: options and `node.toml`", 0).text)
    )
    printed, serving, echo = [
        line
        for line in block("Configuration: options and `node.toml`", 1).text.splitlines()
        if line
    ]
    shown = walk.sh(printed)
    assert shown.returncode == 0, shown.stderr
    port = walk.ports["11112"]
    assert re.search(rf"^port = {port} +# node.toml$", shown.stdout, re.M), shown.stdout
    assert re.search(r"^shutdown_grace = 30.0 +# default$", shown.stdout, re.M)
    assert tomllib.loads(shown.stdout)["ae_title"] == "PACS"  # a file --config takes back
    second = Process(walk.ported(serving), walk.root, walk.env)
    walk.others.append(second)
    assert "dicomtls node PACS listening on 0.0.0.0:" + port in second.wait_for("listening on")
    answered = walk.sh(echo)
    assert answered.returncode == 0 and "0x0000 success" in answered.stdout, answered.stderr
    assert second.stop(signal.SIGTERM) == 0  # `kill`, as the README says
    assert "association from 127.0.0.1:" in second.output()  # the INFO line of the echo


def test_the_complete_node_toml(walk: Walk, tmp_path: Path) -> None:
    """The production example is read as the node would, by the command the README gives,
    before its /etc files exist; and its rules decide as its comments say."""
    from dicomtls.dimse.sop_classes import Service
    from dicomtls.node.policy import AccessPolicy

    text = block("Who may connect, and a record of everything", 0).text
    (tmp_path / "node.toml").write_text(text)
    printed = next(
        line
        for line in block("Configuration: options and `node.toml`", 1).text.splitlines()
        if "--print-config" in line
    )
    assert "dicomtls serve --config node.toml --print-config" in section_text("Who may connect")
    shown = walk.sh(printed, cwd=tmp_path)
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout.count("[[access.rule]]") == 3
    assert "not found here: /etc/dicomtls/pacs-chain.pem" in shown.stdout
    assert tomllib.loads(shown.stdout)["access"] == tomllib.loads(text)["access"]
    config = tomllib.loads(text)
    destinations = [d.split("=")[0] for d in config["move_destinations"]]
    policy = AccessPolicy.from_config(config["access"], destinations)
    assert [r.name for r in policy.rules] == ["ct-scanner", "viewer", "reading-room"]
    assert policy.rules[0].services == {Service.ECHO, Service.STORE}
    assert policy.rules[1].move_destinations == frozenset({"VIEWER"})


# -- doctor --------------------------------------------------------------------------------------


def _table_rows(text: str) -> list[tuple[str, ...]]:
    """A rich table's rows, each cell's folded lines joined: the same at any width."""
    rows: list[list[str]] = []
    for line in text.splitlines():
        if not line.startswith("│"):
            continue
        cells = [c.strip() for c in line.strip().strip("│").split("│")]
        if cells[0] or not rows:
            rows.append(cells)
        else:
            rows[-1] = [f"{a} {b}".strip() for a, b in zip(rows[-1], cells, strict=True)]
    return [tuple(re.sub(r"\s+", " ", c) for c in row) for row in rows]


def test_the_doctor_transcript(walk: Walk) -> None:
    assert walk.node is not None
    made = "dicomtls pki issue dicom-store/pki modality --no-client"
    assert made in " ".join(section_text("Why does my TLS").split())  # what the text says to do
    assert walk.sh(made).returncode == 0
    transcript = block("Why does my TLS connection fail?", 0).text
    command = transcript.splitlines()[0].removeprefix("$ ")
    done = walk.sh(command)
    assert done.returncode == 1, done.stdout + done.stderr  # two FAIL steps
    assert _table_rows(walk.unported(done.stdout)) == _table_rows(transcript)
    assert done.stderr == "", done.stderr  # each failure is in the report, not logged again
    said = block("Why does my TLS connection fail?", 1).text.strip()
    logged = walk.node.wait_for("stage verify")
    assert _peer_port(logged.split(" ", 2)[2].strip()) == _peer_port(said)


def _peer_port(text: str) -> str:
    return re.sub(r"127\.0\.0\.1:\d+", "127.0.0.1:PORT", text)


# -- the library ---------------------------------------------------------------------------------


def test_the_library_examples(walk: Walk) -> None:
    """The section's blocks in one interpreter, as a reader pasting them in order would."""
    code = "\n".join(b.text for b in blocks() if b.section == "The library: `import dicomtls`")
    done = walk.python(code)
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""  # no false warning of a failed handshake
    lines = done.stdout.splitlines()
    assert re.fullmatch(
        r"CN = dicomtls Local CA \([\w.-]+ \d{4}-\d\d-\d\d\), O = dicomtls test PKI OK", lines[0]
    )
    assert lines[1] == "CN = server, O = dicomtls test PKI OK"
    assert lines[2].startswith("0x0 TLSv1.3 ")
    assert "1.2.3 CT 3" in lines
    got = sorted((walk.root / "retrieved-too").iterdir())
    assert len(got) == 3 and all(p.suffix == ".dcm" for p in got)  # nothing of ours beside them


def _resolves(dotted: str) -> bool:
    """``dicomtls.a.B``: a module, or a name a module defines."""
    import importlib

    module, _, name = dotted.rpartition(".")
    try:
        importlib.import_module(dotted)
        return True
    except ImportError:
        return hasattr(importlib.import_module(module), name)


def _prose_class_names() -> set[str]:
    """CamelCase names in the prose's code spans, used as classes (alone, or called, or with
    an attribute): ``NodeConfig(...)``, ``TLSHandshakeError``; not ``-k PatientName=...``."""
    prose = re.sub(r"```.*?```", "", README.read_text(), flags=re.S)
    names = set()
    for span in re.findall(r"`([^`]+)`", " ".join(prose.split())):
        found = re.findall(r"(?<![\w.])([A-Z]\w*)(?=\(|\.|$)", span)
        names |= {n for n in found if any(c.islower() for c in n) and sum(map(str.isupper, n)) > 1}
    return names


def test_every_name_the_readme_gives_is_where_it_says() -> None:
    """``dicomtls.X`` is in the front door (``__all__``) or a module; a class named alone is in
    the front door or in a module the text names (NodeConfig was neither, nor said where)."""
    import importlib

    import dicomtls

    text = " ".join(README.read_text().split())
    dotted_names = set(re.findall(r"\bdicomtls(?:\.[A-Za-z_]\w*)+", text))
    for dotted in dotted_names:
        assert dotted.split(".")[1] in dicomtls.__all__ or _resolves(dotted), dotted
    modules = [n for n in dotted_names if n.split(".")[1] not in dicomtls.__all__]
    homes = [importlib.import_module(name) for name in modules]  # where the text sends you
    named = _prose_class_names()
    assert {"NodeConfig", "TLSHandshakeError", "VerifyFlags"} <= named  # the pattern still reads
    for name in named:
        assert name in dicomtls.__all__ or any(hasattr(home, name) for home in homes), name


def test_the_storage_example(walk: Walk) -> None:
    done = walk.python(block("A storage SCP and an SCU sending a folder to it").text)
    assert done.returncode == 0 and done.stderr == "", done.stderr
    assert sorted(done.stdout.splitlines()) == ["ct1.dcm 0", "ct2.dcm 0", "ct3.dcm 0"]
    assert len(list((walk.root / "received").glob("*.dcm"))) == 3


def test_the_verify_callback_example(walk: Walk) -> None:
    done = walk.python(block("The verify callback").text)
    assert done.returncode == 0 and done.stderr == "", done.stderr


def _varying(text: str) -> str:
    """A demo's output without what changes from run to run."""
    text = re.sub(r"(Valid (From|To)|Serial Number|SHA-256 Fingerprint): .*", r"\1: ...", text)
    return _peer_port(text)


def test_the_demo_samples(walk: Walk) -> None:
    """What the README shows the demo print is what it prints."""
    assert walk.demo is not None
    out = walk.demo.stdout.splitlines()
    seen = out.index("The server's verify callback saw:")
    logged = next(i for i, line in enumerate(out) if line.startswith("server log line: "))
    dump = "\n".join(out[seen + 1 : logged])
    assert _varying(block("The verify callback", 1).text.rstrip()) == _varying(dump)
    table = next(i for i, line in enumerate(out) if "Negotiated secure link" in line)
    shown = "\n".join(line.rstrip() for line in out[table : table + 11])
    assert block("The verify callback", 3).text.rstrip() == shown
    assert _peer_port(block("The verify callback", 4).text.strip()) == _peer_port(
        out[logged].removeprefix("server log line: ")
    )


# -- Layout --------------------------------------------------------------------------------------


def test_the_layout() -> None:
    """Each folder the layout names exists, and each file it names is in that folder."""
    entry, checked = ROOT, 0
    for line in block("Layout").text.splitlines():
        indent, first = len(line) - len(line.lstrip()), (line.split() or [""])[0]
        if indent == 0:  # src/dicomtls/, tests/, fuzz/, ...
            entry = ROOT / first
        elif indent == 2:  # a package of src/dicomtls/, or modules of its own
            entry = ROOT / "src" / "dicomtls" / (first if first.endswith("/") else "")
        assert entry.is_dir(), line
        for name in re.findall(r"[\w-]+\.(?:py|sh|md)\b", line):
            assert list(entry.rglob(name)), f"{name} ({line.strip()!r}) is not in {entry}"
            checked += 1
    assert checked >= 20
