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


@pytest.mark.parametrize("name", sorted(main.commands))
def test_command_and_its_options_are_in_the_readme(name):
    command = main.commands[name]
    assert f"guardian {name}" in README
    missing = [opt for opt in options(command) if f"`{opt}" not in README]
    assert not missing, f"guardian {name}: undocumented options {missing}"


def test_group_options_are_in_the_readme():
    assert not [opt for opt in options(main) if opt not in README]
