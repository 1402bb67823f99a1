"""The command starts light: a command's module, and what it imports, load only when that
command runs. Timed in bench/ (start-up), never here; here: what gets imported."""

from __future__ import annotations

import importlib
import subprocess
import sys

import click
import pytest

from dicomtls.cli import COMMANDS, cli


def _loaded_after(args: list[str]) -> set[str]:
    code = (
        "import sys\n"
        "from dicomtls.cli import cli\n"
        "try:\n"
        f"    cli.main({args!r}, prog_name='dicomtls', standalone_mode=False)\n"
        "except SystemExit:\n"
        "    pass\n"
        "print(' '.join(sorted(m.split('.')[0] for m in sys.modules)))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return set(done.stdout.split()[-400:])


@pytest.mark.parametrize(
    ("args", "not_loaded"),
    [
        (["--version"], {"pydicom", "numpy", "OpenSSL", "cryptography", "rich", "asyncio"}),
        (["--help"], {"pydicom", "numpy", "OpenSSL", "cryptography", "rich"}),
        (["echo", "--help"], {"pydicom", "OpenSSL", "cryptography", "rich", "asyncio"}),
        (["store", "--help"], {"pydicom", "OpenSSL", "cryptography", "rich", "asyncio"}),
        (["find", "--help"], {"pydicom", "OpenSSL", "cryptography", "rich", "asyncio"}),
    ],
)
def test_a_command_loads_only_what_it_needs(args: list[str], not_loaded: set[str]) -> None:
    assert _loaded_after(args) & not_loaded == set()


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_the_help_line_of_each_command_is_its_own(name: str) -> None:
    """`dicomtls --help` lists commands without importing them: each line must be the first
    paragraph of the command's own help, or the list would drift from the commands."""
    module, line = COMMANDS[name]
    command = getattr(importlib.import_module(module), name)
    assert (command.help or "").split("\n\n")[0].replace("\n", " ").strip() == line
    assert cli.get_command(click.Context(cli), name) is command


@pytest.mark.parametrize("module", sorted({module for module, _ in COMMANDS.values()}))
def test_every_command_a_module_defines_is_listed(module: str) -> None:
    """A command missing from COMMANDS would exist in its module and be unknown to `dicomtls`."""
    import click

    commands = [
        c for c in vars(importlib.import_module(module)).values() if isinstance(c, click.Command)
    ]
    nested = {sub for c in commands if isinstance(c, click.Group) for sub in c.commands.values()}
    top = {c.name for c in commands if c not in nested}
    assert top <= set(COMMANDS), top - set(COMMANDS)
