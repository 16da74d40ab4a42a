"""What `guardian doctor` finds on a host: a plain record (the doctor command fills it in, output prints it)."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class Diagnosis:
    """What `guardian doctor` found on one host."""

    host: str
    url: str
    reachable: bool = False
    server_version: str | None = None
    protocol: int | None = None
    scopes: list[str] = field(default_factory=list)
    token: str = "none"
    tls: str = ""
    device: str = "not used (loopback)"
    cleanup_mode: str | None = None  # "archive", or "delete (2026.4.29 has no archive)", once reached
    problems: list[str] = field(default_factory=list)  # each one sentence ending in the fix

    @property
    def usable(self) -> bool:
        return self.reachable and not self.problems
