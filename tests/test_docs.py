"""Every command and every option of the CLI is documented in the README."""

from pathlib import Path

import click
import pytest

from guardian.cli import main

README = (Path(__file__).parent.parent / "README.md").read_text()


def options(command: click.Command):
    for param in command.params:
        if isinstance(param, click.Option):
            yield from (opt for opt in param.opts if opt not in ("-h", "--help"))


def commands(group: click.Group, prefix: str = "guardian"):
    """(name, command) of every command, those of a group (`guardian silence add`) included."""
    for name, command in sorted(group.commands.items()):
        if isinstance(command, click.Group):
            yield from commands(command, f"{prefix} {name}")
        else:
            yield f"{prefix} {name}", command


@pytest.mark.parametrize("name, command", list(commands(main)))
def test_command_and_its_options_are_in_the_readme(name, command):
    assert name in README
    missing = [opt for opt in options(command) if f"`{opt}" not in README]
    assert not missing, f"{name}: undocumented options {missing}"


def test_group_options_are_in_the_readme():
    assert not [opt for opt in options(main) if opt not in README]
