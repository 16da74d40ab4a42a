"""Secret: a token or URL that is never printed."""

from __future__ import annotations


class Secret:
    """A token or URL that must never be printed: its repr and str are redacted."""

    __slots__ = ("_value", "source")

    def __init__(self, value: str, source: str):
        self._value = value
        self.source = source  # where it came from, safe to show ("env T440_TOKEN", "file /etc/...")

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return f"Secret(<redacted>, from {self.source})"

    __str__ = __repr__

    def __eq__(self, other):
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self):
        return hash(self._value)
