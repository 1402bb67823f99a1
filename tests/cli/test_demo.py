"""The main job, driven as a person runs it: the real command in a subprocess."""

import subprocess
import sys
from pathlib import Path


def test_demo_runs_end_to_end() -> None:
    exe = Path(sys.executable).with_name("dicomtls")
    done = subprocess.run([str(exe), "demo"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    out = done.stdout
    assert "Negotiated secure link" in out and "TLSv1.3" in out
    assert "SSL client : No" in out
    assert "Error INVALID_PURPOSE: unsuitable certificate purpose" in out
    assert "demo: all went as expected" in out
    assert "Traceback" not in done.stderr


def test_cli_error_is_one_line() -> None:
    exe = Path(sys.executable).with_name("dicomtls")
    done = subprocess.run([str(exe), "no-such-command"], capture_output=True, text=True)
    assert done.returncode != 0
    assert "Traceback" not in done.stderr
    assert "No such command" in done.stderr
