#!/usr/bin/env python3
"""Writes README.md's option tables from the commands' own --help, so the two never differ.

    .venv/bin/python scripts/cli_docs.py      # rewrites the tables in README.md in place

Each table sits between `<!-- cli_docs: guardian check ... -->` and `<!-- /cli_docs -->`; the prose
around the tables is written by hand. The tables are found by walking the click group, so a new command
with no table yet gets a section of its own at the end of the README's "Commands" section, to be moved
and described by hand. An option that reads the same in two commands or more (`--config`, `--json`) is
listed once, in the `shared` table, and each command names the shared options it takes.
"""

from __future__ import annotations

import re
import sys
from dataclasses import dataclass
from pathlib import Path

import click

README = Path(__file__).resolve().parent.parent / "README.md"
REGENERATE = ".venv/bin/python scripts/cli_docs.py"
SHARED = "shared"
BLOCK = re.compile(r"<!-- cli_docs: (?P<key>.+?) \(generated[^\n]*-->\n.*?<!-- /cli_docs -->", re.DOTALL)
START = "<!-- cli_docs: {key} (generated from --help by scripts/cli_docs.py; edit the help in guardian/cli.py) -->"
END = "<!-- /cli_docs -->"
SHARED_LINE = "the shared options (above):"
HEADER = "| option | meaning |\n|---|---|"

# Code in a help text, set in code type: options, paths, environment variables, config keys and file names.
CODE = re.compile(r"(?<![\w.-])(?:--?[a-z][\w-]*|~?/[\w./-]*\w|\$?[A-Z][A-Z0-9]*_[A-Z0-9_]+|[a-z_]+(?:\.[a-z_]{2,})+|"
                  r"[a-z][a-z0-9]*(?:_[a-z0-9]+)+|\.[a-z]{2,5}\b)")
CHOICES = re.compile(r"\[([^\]|]*(?:\|[^\]|]*)+)\]")  # click shows a choice as [a|b]; the README as a|b


@dataclass(frozen=True)
class Row:
    option: str  # the option column, Markdown
    meaning: str  # the help column, Markdown: what --help says, with its [default: ...] and the like
    name: str  # the longest of the option's names, to name it by

    def markdown(self) -> str:
        return f"| {self.option} | {self.meaning} |"


def table_cell(text: str) -> str:
    """Help text as one Markdown table cell: on one line, its code in code type, nothing read as Markdown."""
    pieces = re.split(r"(`[^`]*`)", " ".join(text.replace("\b", "").split()))
    return "".join(piece.replace("|", r"\|") if piece.startswith("`") else _prose_cell(piece) for piece in pieces)


def _prose_cell(text: str) -> str:
    pieces = CODE.split(text)
    codes = CODE.findall(text) + [""]
    return "".join(_escape(piece) + (f"`{code}`".replace("|", r"\|") if code else "")
                   for piece, code in zip(pieces, codes))


def _escape(text: str) -> str:
    return re.sub(r"([\\|<*_])", r"\\\1", text)


def option_cell(spec: str) -> str:
    """click's `-o, --output FILE` as `-o`, `--output FILE`; a choice's [a|b] as a|b."""
    return ", ".join(f"`{name}`".replace("|", r"\|") for name in CHOICES.sub(r"\1", spec).split(", "))


def option_rows(command: click.Command, ctx: click.Context) -> list[Row]:
    help_option = command.get_help_option(ctx)
    rows = []
    for param in command.get_params(ctx):
        is_option = isinstance(param, click.Option) and param is not help_option  # arguments are in the usage line
        record = param.get_help_record(ctx) if is_option else None
        if record:
            rows.append(Row(option_cell(record[0]), table_cell(record[1]), max(param.opts, key=len)))
    return rows


def commands(group: click.Group, ctx: click.Context):
    """Every command under the group, depth first in click's order, with its context."""
    for name in group.list_commands(ctx):
        command = group.get_command(ctx, name)
        sub = command.make_context(name, [], parent=ctx, resilient_parsing=True)  # as --help would, callbacks left out
        yield sub, command
        if isinstance(command, click.Group):
            yield from commands(command, sub)


def shared_rows(rows_by_command: list[list[Row]]) -> list[Row]:
    """The rows found in two commands or more, in the order the commands give them."""
    seen: dict[Row, int] = {}
    for rows in rows_by_command:
        for row in set(rows):
            seen[row] = seen.get(row, 0) + 1
    ordered: list[Row] = []
    for rows in rows_by_command:
        at = 0  # just after this command's latest shared row placed so far
        for row in rows:
            if seen[row] < 2:
                continue
            if row in ordered:
                at = ordered.index(row) + 1
            else:
                ordered.insert(at, row)
                at += 1
    return ordered


def tables(root: click.Group, info_name: str = "guardian") -> dict[str, str]:
    """The body of every table, by key: the root group's own options, each command's, and the shared ones."""
    root_ctx = root.make_context(info_name, [], resilient_parsing=True)
    walked = [(root_ctx, root), *commands(root, root_ctx)]
    rows_of = {ctx.command_path: option_rows(command, ctx) for ctx, command in walked}
    groups = {ctx.command_path for ctx, command in walked if isinstance(command, click.Group)}
    shared = shared_rows([rows for path, rows in rows_of.items() if path not in groups])
    bodies = {root_ctx.command_path: _table(rows_of[root_ctx.command_path]), SHARED: _table(shared)}
    for ctx, command in walked[1:]:
        rows = rows_of[ctx.command_path]
        if ctx.command_path in groups:  # a group's own options only: its commands have their tables
            if rows:
                bodies[ctx.command_path] = _table(rows)
            continue
        parts = [_usage(command, ctx), _table([row for row in rows if row not in shared])]
        names = [row.name for row in rows if row in shared]
        if names:
            also = " also" if len(names) < len(rows) else ""
            parts.append(f"It{also} takes {SHARED_LINE} {', '.join(f'`{name}`' for name in names)}.")
        bodies[ctx.command_path] = "\n\n".join(part for part in parts if part)
    return bodies


def _table(rows: list[Row]) -> str:
    return "\n".join([HEADER] + [row.markdown() for row in rows]) if rows else ""


def _usage(command: click.Command, ctx: click.Context) -> str:
    """The usage line, for a command that takes arguments (the table shows only options)."""
    if not any(isinstance(param, click.Argument) for param in command.params):
        return ""
    return "Usage: " + table_cell(f"`{ctx.command_path} {' '.join(command.collect_usage_pieces(ctx))}`")


class ReadmeError(ValueError):
    """The README cannot take the tables as they are: a table for a command gone, or no "Commands" section."""


def regenerate(readme: str, root: click.Group) -> str:
    """The README with every table as --help says today, and a new section for each command without one."""
    bodies = tables(root)

    def fresh(match: re.Match) -> str:
        key = match["key"]
        if key not in bodies:
            raise ReadmeError(f"README.md has an option table for `{key}`, which is no command any more: "
                             f"remove that table and its section")
        return block(key, bodies[key])

    readme = BLOCK.sub(fresh, readme)
    documented = set(BLOCK.findall(readme))
    missing = [key for key in bodies if key not in documented]
    return _insert_sections(readme, [_section(root, key, bodies[key]) for key in missing]) if missing else readme


def block(key: str, body: str) -> str:
    """Blank lines around the body: a table ends at one, whatever the Markdown reader."""
    return f"{START.format(key=key)}\n\n{body}\n\n{END}" if body else f"{START.format(key=key)}\n{END}"


def _section(root: click.Group, key: str, body: str) -> str:
    command = root
    for name in key.split()[1:] if key != SHARED else []:
        command = command.commands[name]
    about = (command.help or "").split("\n\n")[0] if key != SHARED else "Options that mean the same in every command."
    return f"### `{key}`\n\n{' '.join(about.split())}\n\n{block(key, body)}\n\n"


def _insert_sections(readme: str, sections: list[str]) -> str:
    """At the end of the "Commands" section, just before the next level-2 heading."""
    start = readme.find("\n## Commands\n")
    if start < 0:
        raise ReadmeError('README.md has no "## Commands" section to add the new commands to')
    end = readme.find("\n## ", start + 1)
    end = len(readme) if end < 0 else end + 1
    return readme[:end] + "".join(sections) + readme[end:]


def main() -> int:
    from guardian.cli import main as guardian

    try:
        README.write_text(regenerate(README.read_text(), guardian))
    except ReadmeError as exc:
        print(f"cli_docs: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
