"""Test hosts on a real network: Linux network namespaces joined to this one by veth pairs.

Each NetnsHost is a namespace with one address, 198.18.<n>.2 (the first free n), from the range RFC 2544 sets aside
for network testing; this side of its veth pair is 198.18.<n>.1. Traffic goes only to these
addresses, which exist only while the test runs. Needs root and iproute2; when a namespace cannot
be made, `make` fails with a sentence saying why (the remote tests must not skip silently).
"""

from __future__ import annotations

import os
import subprocess


class NetnsError(RuntimeError):
    pass


def _ip(*args: str, netns: str | None = None) -> None:
    command = (["ip", "netns", "exec", netns] if netns else []) + ["ip", *args]
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        raise NetnsError(f"`{' '.join(command)}` failed: {result.stderr.strip() or result.returncode}")


def _free_subnet() -> int:
    """A 198.18.<n>.0/24 no interface uses yet (a run killed midway may have left one behind)."""
    used = subprocess.run(["ip", "-o", "-4", "addr"], capture_output=True, text=True).stdout
    for n in range(1, 255):
        if f" 198.18.{n}." not in used:
            return n
    raise NetnsError("no free 198.18.<n>.0/24 subnet left for a test host")


class NetnsHost:
    """One test host. `make()` picks its subnet, so several can be made one after another."""

    def make(self) -> "NetnsHost":
        if os.geteuid() != 0:
            raise NetnsError(
                "the remote tests make network namespaces, which needs root (run them as root, as CI does)"
            )
        index = _free_subnet()
        tag = f"{os.getpid() % 10000}-{index}"
        self.netns = f"gdn-{tag}"
        self.outer, self.inner = f"gdh{tag}", f"gdn{tag}"  # interface names: at most 15 characters
        self.address, self.gateway_side = f"198.18.{index}.2", f"198.18.{index}.1"
        try:
            _ip("netns", "add", self.netns)
            _ip("link", "add", self.outer, "type", "veth", "peer", "name", self.inner)
            _ip("link", "set", self.inner, "netns", self.netns)
            _ip("addr", "add", f"{self.gateway_side}/24", "dev", self.outer)
            _ip("link", "set", self.outer, "up")
            _ip("addr", "add", f"{self.address}/24", "dev", self.inner, netns=self.netns)
            _ip("link", "set", self.inner, "up", netns=self.netns)
            _ip("link", "set", "lo", "up", netns=self.netns)
        except (NetnsError, FileNotFoundError) as exc:
            self.remove()
            raise NetnsError(f"cannot make a network namespace for the remote tests: {exc}") from None
        return self

    def remove(self) -> None:
        """Deleting the namespace deletes its end of the veth pair, and so the pair."""
        if not hasattr(self, "netns"):
            return
        for args in (("netns", "del", self.netns), ("link", "del", self.outer)):
            subprocess.run(["ip", *args], capture_output=True)
