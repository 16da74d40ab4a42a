"""YAML with a line for every key, read one section at a time: file, line and key in every error.

Unknown keys are refused (`Section.done`); secrets come from an environment variable or a file, never the file itself.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from guardian.settings.model import ConfigError
from guardian.settings.secrets import Secret
from guardian.settings.units import kind_of, parse_duration

TEXT_TAG = "tag:yaml.org,2002:str"


class _LineMap(dict):
    """A dict that remembers the line of each key (and its own), for error messages."""

    line = 0

    def __init__(self):
        super().__init__()
        self.lines = {}


def yaml_load(text: str):
    import yaml

    # libyaml's parser when PyYAML has it: a 50-host config in 1 ms instead of 8.5
    class Loader(getattr(yaml, "CSafeLoader", yaml.SafeLoader)):
        pass

    def construct(loader, node):
        # a text scalar's value is its text, as construct_object would find after its checks: taken at once for
        # most keys and values (15,000 in a 500-host config, a quarter of reading it)
        if type(node) is yaml.ScalarNode and node.tag == TEXT_TAG:
            return node.value
        return loader.construct_object(node, deep=True)

    def construct_mapping(loader, node):
        mapping = _LineMap()
        mapping.line = node.start_mark.line + 1
        for key_node, value_node in node.value:
            key = construct(loader, key_node)
            if not isinstance(key, str):
                raise ConfigError(f"line {key_node.start_mark.line + 1}: keys must be text, got {key!r}")
            if key in mapping:
                raise ConfigError(f"line {key_node.start_mark.line + 1}: key {key!r} appears twice")
            mapping[key] = construct(loader, value_node)
            mapping.lines[key] = key_node.start_mark.line + 1
        return mapping

    Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, construct_mapping)
    try:
        return yaml.load(text, Loader=Loader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}: " if mark else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ConfigError(f"{where}not valid YAML ({problem})") from None
    except RecursionError:
        raise ConfigError("the YAML is nested too deeply to be a guardian config") from None


class Section:
    """Reads one mapping of the file, checking keys and types, with file:line in every error."""

    def __init__(self, path: str, key_path: str, mapping, line: int):
        self.path, self.key_path, self.line = path, key_path, line
        if mapping is None:
            mapping = _LineMap()
        if not isinstance(mapping, dict):
            self.fail(None, f"must be a mapping, got {kind_of(mapping)}")
        self.mapping = mapping
        self.used: set[str] = set()

    def where(self, key: str | None) -> str:
        line = self.mapping.lines.get(key, self.line) if key and hasattr(self.mapping, "lines") else self.line
        name = f"{self.key_path}.{key}" if key and self.key_path else (key or self.key_path)
        return f"{self.path}:{line}: {name}"

    def fail(self, key: str | None, problem: str):
        raise ConfigError(f"{self.where(key)}: {problem}")

    def has(self, key: str) -> bool:
        return key in self.mapping

    def get(self, key: str, default=None):
        self.used.add(key)
        return self.mapping.get(key, default)

    def section(self, key: str) -> "Section":
        value = self.get(key)
        line = self.mapping.lines.get(key, self.line) if hasattr(self.mapping, "lines") else self.line
        sub_path = f"{self.key_path}.{key}" if self.key_path else key
        return Section(self.path, sub_path, value, line)

    def text(self, key: str, default=None, required=False):
        value = self.get(key, default)
        if value is None and required:
            self.fail(key, "is required")
        if value is not None and not isinstance(value, str):
            self.fail(key, f"must be text, got {kind_of(value)}")
        return value

    def boolean(self, key: str, default: bool) -> bool:
        value = self.get(key, default)
        if not isinstance(value, bool):
            self.fail(key, f"must be true or false, got {kind_of(value)}")
        return value

    def integer(self, key: str, default=None, minimum=None, required=False):
        value = self.get(key, default)
        if value is None and required:
            self.fail(key, "is required")
        if isinstance(value, bool) or not isinstance(value, int):
            self.fail(key, f"must be a whole number, got {kind_of(value)}")
        if minimum is not None and value < minimum:
            self.fail(key, f"must be at least {minimum}, got {value}")
        return value

    def number(self, key: str, default: float) -> float:
        value = self.get(key, default)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            self.fail(key, f"must be a number, got {kind_of(value)}")
        return float(value)

    def duration(self, key: str, default: float | None, can_be_off: bool = False) -> float | None:
        """A duration with a unit, or `default` (seconds) when the key is absent; None for `off` if it `can_be_off`."""
        if not self.has(key):
            self.used.add(key)
            return default
        value = self.get(key)
        if can_be_off and (value is None or value is False):  # YAML reads `off` and `false` as false, `null` as nothing
            return None
        try:
            return parse_duration(value)
        except ValueError as exc:
            self.fail(key, f"{exc}{'; write off to switch it off' if can_be_off else ''}")

    def names(self, key: str) -> tuple[str, ...]:
        value = self.get(key, [])
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            self.fail(key, f"must be a list of text, got {kind_of(value)}")
        return tuple(value)

    def done(self):
        """Unknown keys are errors: a typo must not silently fall back to a default."""
        for key in self.mapping:
            if key not in self.used:
                self.fail(key, "is not a known setting (check the spelling; see the README's configuration reference)")


def list_items(section: Section, key: str):
    """A Section for each mapping of the list at `key`, each named `key[i]` with its own line."""
    items = section.get(key, [])
    if not isinstance(items, list):
        section.fail(key, f"must be a list, got {kind_of(items)}")
    name = f"{section.key_path}.{key}" if section.key_path else key
    for index, item in enumerate(items):
        line = getattr(item, "line", section.mapping.lines.get(key, section.line))
        yield Section(section.path, f"{name}[{index}]", item, line)


def secret(section: Section, base: str, what: str, warnings: list, required: bool = False,
           files: dict[str, str] | None = None) -> Secret | None:
    """A secret from `<base>_env` (an environment variable) or `<base>_file`; never from the file itself. `files`
    (file name -> its secret) reads a file that many sections name once, and warns of its mode once."""
    if section.has(base):
        section.fail(base, f"{what} are secrets and do not go in the config file: use {base}_env "
                           f"(an environment variable) or {base}_file (a file readable only by you)")
    env_name, file_name = section.text(f"{base}_env"), section.text(f"{base}_file")
    if env_name and file_name:
        section.fail(f"{base}_file", f"give {base}_env or {base}_file, not both")
    if env_name:
        value = os.environ.get(env_name, "").strip()
        if not value:
            section.fail(f"{base}_env", f"the environment variable {env_name} is not set")
        return Secret(value, f"env {env_name}")
    if file_name:
        files = {} if files is None else files
        if file_name not in files:
            files[file_name] = _read_secret_file(section, f"{base}_file", file_name, warnings)
        return Secret(files[file_name], f"file {file_name}")
    if required:
        section.fail(None, f"needs {base}_env or {base}_file")
    return None


def _read_secret_file(section: Section, key: str, file_name: str, warnings: list) -> str:
    path = Path(file_name).expanduser()
    try:
        with open(path) as handle:  # the mode of the file read, by its descriptor: one lookup of the path, not two
            mode = os.fstat(handle.fileno()).st_mode
            value = handle.read().strip()
    except OSError as exc:
        section.fail(key, f"cannot read {path} ({exc.strerror})")
    if not value:
        section.fail(key, f"{path} is empty")
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        warnings.append(f"{section.where(key)}: {path} is readable by other users; run: chmod 600 {path}")
    return value


def readable_file(section: Section, key: str) -> str | None:
    """A path setting (a CA file): expanded, and readable now rather than at the first alert."""
    value = section.text(key)
    if value is None:
        return None
    path = Path(value).expanduser()
    if not os.access(path, os.R_OK):
        section.fail(key, f"cannot read {value}")
    return str(path)
