"""A node started with few file descriptors raises its own limit to what its limits may need.

Many systems start processes at 1,024 descriptors; 100 associations with 16 C-STOREs
outstanding each may hold 1,800 files, and 512 pending TLS handshakes 512 sockets. Read from the running process, not computed here.
"""

from __future__ import annotations

import resource
from pathlib import Path

from .helpers import serving


def _soft_limit(pid: int) -> int:
    for line in Path(f"/proc/{pid}/limits").read_text().splitlines():
        if line.startswith("Max open files"):
            return int(line.split()[3])
    raise AssertionError("no 'Max open files' line")


def test_the_node_raises_its_soft_limit_to_what_it_may_need(tmp_path: Path) -> None:
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    with serving(tmp_path, "--max-associations", "100", open_files=(256, hard)) as node:
        assert _soft_limit(node.proc.pid) == min(100 * 18 + 512 + 64, hard)
        assert not node.lines_with("open files:")  # enough: no warning


def test_a_hard_limit_too_low_is_said_in_one_line(tmp_path: Path) -> None:
    with serving(tmp_path, "--max-associations", "100", open_files=(256, 512)) as node:
        assert _soft_limit(node.proc.pid) == 512  # as far as it may go
        [line] = node.lines_with("open files:")
        assert "may need 2376" in line and "may have 512" in line and "ulimit -Hn" in line
