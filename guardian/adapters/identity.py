"""The guardian's Ed25519 device identity and the device tokens gateways issue to it.

A gateway on another machine keeps a client's scopes only when the client proves a paired device
identity (openclaw-gateway.md section 4). The key pair lives in the state dir (0600) so one
approval per gateway lasts; `cryptography` is imported only when a device is actually used.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import os
import threading
from dataclasses import dataclass
from pathlib import Path

from guardian.adapters.files import hold_lock, move_aside, write_private


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def b64url_decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@dataclass(frozen=True)
class DeviceIdentity:
    device_id: str  # lowercase hex sha256 of the raw public key
    public_key: str  # base64url (no padding) of the raw 32-byte public key
    private_key: bytes  # raw 32-byte seed

    def sign(self, payload: str) -> str:
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

        return b64url(Ed25519PrivateKey.from_private_bytes(self.private_key).sign(payload.encode()))


def signature_payload(device_id: str, client_id: str, client_mode: str, role: str, scopes: list[str],
                      signed_at: int, token: str, nonce: str, platform: str, device_family: str = "") -> str:
    """The v3 string a gateway verifies (fields in this order, scopes in the order sent)."""
    return "|".join(["v3", device_id, client_id, client_mode, role, ",".join(scopes), str(signed_at),
                     token, nonce, platform.strip().lower(), device_family.strip().lower()])


class IdentityStore:
    """device.json (the key pair) and device-tokens.json (one token per host) under state_dir/identity.

    One store serves every poll thread of a run, and several runs (a check and a cleanup) may
    share the dir: the identity is read or made once, and every change to these files is made
    under identity/lock, so no thread or run makes a second identity or loses another's token.
    """

    def __init__(self, state_dir: Path):
        self.dir = Path(state_dir) / "identity"
        self.key_file = self.dir / "device.json"
        self.token_file = self.dir / "device-tokens.json"
        self.lock_file = self.dir / "lock"
        self.warnings: list[str] = []
        self._identity: DeviceIdentity | None = None
        self._loading = threading.Lock()

    def identity(self) -> DeviceIdentity:
        with self._loading:
            if self._identity is None:
                with self._locked():
                    self._identity = self._read_identity() or self._create()
            return self._identity

    @contextlib.contextmanager
    def _locked(self):
        """An exclusive lock on identity/lock; a descriptor of its own, so threads exclude each other too."""
        fd = hold_lock(self.lock_file, wait=None)  # held for one small read-modify-write
        try:
            yield
        finally:
            os.close(fd)

    def _read_identity(self) -> DeviceIdentity | None:
        """The stored identity; None when there is none, or it was unreadable and moved aside."""
        try:
            data = json.loads(self.key_file.read_text())
            private = b64url_decode(data["privateKey"])
            identity = _from_private(private)
            if identity.device_id != data.get("deviceId"):
                raise ValueError("deviceId does not match the key")
            if self.key_file.stat().st_mode & 0o077:
                self.warnings.append(f"the device key {self.key_file} is readable by other users; "
                                     f"run: chmod 600 {self.key_file}")
            return identity
        except FileNotFoundError:
            return None
        except (OSError, ValueError, KeyError, TypeError) as exc:
            moved = move_aside(self.key_file)
            self.warnings.append(f"the device identity {self.key_file} was unreadable ({exc}); moved it to "
                                 f"{moved.name} and made a new one, which each remote gateway must approve again")
            return None

    def _create(self) -> DeviceIdentity:
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
        from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat

        private = Ed25519PrivateKey.generate().private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption())
        identity = _from_private(private)
        write_private(self.key_file, json.dumps({"version": 1, "deviceId": identity.device_id,
                                                 "publicKey": identity.public_key,
                                                 "privateKey": b64url(private)}, indent=2))
        return identity

    def _tokens(self) -> dict:
        try:
            data = json.loads(self.token_file.read_text())
            return data if isinstance(data, dict) else {}
        except (OSError, ValueError):
            return {}

    def device_token(self, host: str, device_id: str) -> str | None:
        entry = self._tokens().get(host)
        if isinstance(entry, dict) and entry.get("deviceId") == device_id and isinstance(entry.get("token"), str):
            return entry["token"]
        return None

    def save_device_token(self, host: str, device_id: str, token: str, scopes: list[str]) -> None:
        if self.device_token(host, device_id) == token:
            return  # the usual case, without the lock
        with self._locked():  # read again under it: another thread or run may have saved its host's meanwhile
            tokens = self._tokens()
            tokens[host] = {"deviceId": device_id, "token": token, "scopes": scopes}
            write_private(self.token_file, json.dumps(tokens, indent=2))


def _from_private(private: bytes) -> DeviceIdentity:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    public = Ed25519PrivateKey.from_private_bytes(private).public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    return DeviceIdentity(hashlib.sha256(public).hexdigest(), b64url(public), private)

