"""The README's option tables say what the commands' own --help says, for every command there is."""

import difflib
import re
from pathlib import Path

import cli_docs
import click
import pytest
from click.testing import CliRunner
from hypothesis import example, given
from hypothesis import strategies as st

from guardian.cli import main

README = (Path(__file__).parent.parent / "README.md").read_text()


def test_readme_tables_are_the_ones_help_gives():
    fresh = cli_docs.regenerate(README, main)
    diff = "".join(difflib.unified_diff(README.splitlines(True), fresh.splitlines(True), "README.md", "--help", n=1))
    assert not diff, f"README.md's option tables differ from --help; regenerate them: {cli_docs.REGENERATE}\n{diff}"


def command_paths(group: click.Group, parents=()):
    for name, command in sorted(group.commands.items()):
        yield (*parents, name)
        if isinstance(command, click.Group):
            yield from command_paths(command, (*parents, name))


def block(key: str) -> str:
    blocks = {match["key"]: match[0] for match in cli_docs.BLOCK.finditer(README)}
    assert key in blocks, f"README.md has no option table for `{key}`; add it: {cli_docs.REGENERATE}"
    return blocks[key]


def rows(markdown: str) -> dict[tuple[str, ...], str]:
    """Each table row's option names, with its meaning as plain text."""
    found = {}
    for line in markdown.splitlines():
        cells = re.split(r"(?<!\\)\|", line)[1:-1]
        if len(cells) == 2 and cells[0].strip() not in ("option", "---"):
            found[tuple(re.findall(r"`(-[\w-]+)", cells[0]))] = unmarked(cells[1]).strip()
    return found


def unmarked(cell: str) -> str:
    """What a Markdown reader shows of a cell: no code marks, no escapes."""
    return re.sub(r"\\(.)", r"\1", cell.replace("`", ""))


def squeezed(text: str) -> str:
    """Without whitespace, so the terminal's line wrapping (even at a hyphen) does not count."""
    return "".join(text.split())


@pytest.mark.parametrize("path", [(), *command_paths(main)], ids=lambda path: " ".join(("guardian", *path)))
def test_every_option_in_help_has_its_row_saying_the_same(path):
    result = CliRunner().invoke(main, [*path, "--help"], terminal_width=80)
    assert result.exit_code == 0, result.output
    command = main
    for name in path:
        command = command.commands[name]
    if isinstance(command, click.Group) and not [p for p in command.params if isinstance(p, click.Option)]:
        return  # a group without options of its own has no table: its commands have theirs
    in_help = set(re.findall(r"^ {2}(-[\w-]+)(?:, (-[\w-]+))?", result.output, re.M))
    in_help = {name for names in in_help for name in names if name} - {"-h", "--help"}
    own = block(" ".join(("guardian", *path)))
    shared_line = next((line for line in own.splitlines() if cli_docs.SHARED_LINE in line), "")
    taken = set(re.findall(r"`(-[\w-]+)`", shared_line))
    shared = rows(block(cli_docs.SHARED))
    documented = rows(own) | {names: meaning for names, meaning in shared.items() if taken & set(names)}
    names = {name for row in documented for name in row}
    assert names == in_help, f"guardian {' '.join(path)}: README rows {sorted(names)}, --help {sorted(in_help)}"
    for row, meaning in documented.items():
        assert squeezed(meaning) in squeezed(result.output), f"{' '.join(path)} {row}: the README says {meaning!r}"


@given(st.text(st.characters(blacklist_categories=("Cs", "Cc"), blacklist_characters="`\\"), max_size=80))
@example("Close at most N sessions | per host_run *now* <id>")
@example("overrides cleanup.idle_after (env GUARDIAN_LIMIT; default ~/.config/x.yaml) --format json")
def test_a_help_text_becomes_one_cell_that_shows_the_same_words(text):
    cell = cli_docs.table_cell(text)
    assert "\n" not in cell and not re.search(r"(?<!\\)\|", cell), "a table cell must not end the row or the cell"
    assert unmarked(cell) == " ".join(text.split())


def test_code_in_a_help_text_is_set_as_code():
    cell = cli_docs.table_cell("Overrides cleanup.idle_after and on_critical (env GUARDIAN_LIMIT; ~/.config/g.yaml); "
                               "with -o, from the .html extension; see `guardian silence list`, e.g. this.")
    assert cell == ("Overrides `cleanup.idle_after` and `on_critical` (env `GUARDIAN_LIMIT`; `~/.config/g.yaml`); "
                    "with `-o`, from the `.html` extension; see `guardian silence list`, e.g. this.")


@click.group()
@click.option("--debug", is_flag=True, help="Tracebacks.")
def toy():
    """A toy CLI."""


@toy.command()
@click.option("--config", help="Config file.")
@click.option("--format", type=click.Choice(["a", "b"]), help="Format.")
def one():
    """The first command.

    More about it."""


@toy.command()
@click.option("--config", help="Config file.")
@click.option("--format", type=click.Choice(["a", "b", "c"]), help="Format.")
def two():
    """The second."""


@toy.group()
def store():
    """A group without options of its own."""


@store.command("add")
@click.argument("name")
@click.option("--for", "duration", default="1h", show_default=True, help="How long.")
def store_add(name, duration):
    """Add one."""


TOY_README = "# Toy\n\n## Commands\n\nPreamble.\n\n## Next\n\nAfter.\n"


def test_a_command_without_a_table_gets_a_section_at_the_end_of_commands():
    readme = cli_docs.regenerate(TOY_README, toy)
    commands, after = readme.split("## Next")
    assert after == "\n\nAfter.\n"
    headings = re.findall(r"^### `(.+)`$", commands, re.M)
    assert headings == ["guardian", "shared", "guardian one", "guardian store add", "guardian two"]
    assert "The first command.\n\n<!-- cli_docs: guardian one" in commands  # its first paragraph, then its table
    assert "Usage: `guardian store add [OPTIONS] NAME`" in commands
    assert "| `--for TEXT` | How long. [default: 1h] |" in commands


def test_an_option_that_reads_the_same_in_two_commands_is_listed_once():
    tables = cli_docs.tables(toy)
    assert rows(tables["shared"]) == {("--config",): "Config file."}
    assert rows(tables["guardian one"]) == {("--format",): "Format."}
    assert "`--format a\\|b`" in tables["guardian one"] and "`--format a\\|b\\|c`" in tables["guardian two"]
    assert tables["guardian one"].endswith(f"It also takes {cli_docs.SHARED_LINE} `--config`.")
    assert "guardian store" not in tables  # no table for a group without options


def test_regenerating_again_changes_nothing():
    once = cli_docs.regenerate(TOY_README, toy)
    assert cli_docs.regenerate(once, toy) == once


def test_a_table_for_a_command_gone_is_named():
    readme = cli_docs.regenerate(TOY_README, toy).replace("guardian two", "guardian three")
    with pytest.raises(cli_docs.ReadmeError, match="`guardian three`, which is no command any more"):
        cli_docs.regenerate(readme, toy)
