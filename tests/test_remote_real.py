"""Remote gateways for real: pairing, TLS and the older release, across a network.

Real OpenClaw 2026.9.6 gateways run inside network namespaces (tests/netns.py), bound to their
namespace address with token auth; the guardian runs outside, as a remote client. An
openclaw@2026.4.29 gateway (protocol 3) runs on loopback for the older-release checks.
"""

from __future__ import annotations

import json

import pytest
from certs import make_certificate
from conftest import create_sessions, idle_after_between, list_rows
from netns import NetnsError, NetnsHost

from guardian.adapters import audit
from guardian.adapters.identity import IdentityStore

pytestmark = pytest.mark.real_gateway
OLD_RELEASE = "2026.4.29"


@pytest.fixture(scope="module")
def remote(tmp_path_factory):
    """far: plain ws:// in its own namespace; secure: wss:// with a test-made certificate; old: 2026.4.29."""
    import peer

    hosts = []
    try:
        hosts = [NetnsHost().make(), NetnsHost().make()]
    except NetnsError as exc:
        for host in hosts:
            host.remove()
        pytest.fail(str(exc))
    cert_file, key_file, fingerprint = make_certificate(tmp_path_factory.mktemp("tls"), hosts[1].address)
    tls = {"gateway": {"tls": {"enabled": True, "certPath": str(cert_file), "keyPath": str(key_file)}}}
    try:
        gateways = peer.start_many([
            {"name": "far", "bind": hosts[0].address, "netns": hosts[0].netns},
            {"name": "secure", "bind": hosts[1].address, "netns": hosts[1].netns, "extra_config": tls},
            {"name": "old", "version": OLD_RELEASE},
        ])
    except BaseException:
        for host in hosts:
            host.remove()
        raise
    yield {**{gw.name: gw for gw in gateways}, "cert": cert_file, "fingerprint": fingerprint}
    peer.stop_many(gateways)
    for host in hosts:
        host.remove()


def approve_from(output: str, gw) -> str:
    """Run the approve command the guardian printed (its last word is the request id) on the gateway host."""
    line = next(line for line in output.splitlines() if "openclaw devices approve " in line)
    request_id = line.rsplit(" ", 1)[1]
    result = gw.openclaw("devices", "approve", request_id)
    assert result.returncode == 0, result.stdout + result.stderr
    return request_id


def pending_requests(gw) -> list:
    return json.loads(gw.openclaw("devices", "list", "--json").stdout)["pending"]


def test_pairing_check_and_cleanup_on_a_remote_gateway(remote, write_config, cli, state_dir):
    far = remote["far"]
    assert far.url.startswith("ws://198.18.")
    config = write_config({"far": {"url": far.url, "token": far.token, "limit": 10, "insecure": True}})

    first = cli("check", "--config", config, "--format", "plain")
    assert first.exit_code == 3 and "pairing required" in first.stdout
    approve_from(first.stdout, far)
    second = cli("check", "--config", config, "--json")
    assert second.exit_code == 0 and json.loads(second.stdout)["hosts"][0]["sessions"] == 0
    doctor = cli("doctor", "--config", config, "--json")
    (diagnosis,) = json.loads(doctor.stdout)
    assert doctor.exit_code == 0 and {"operator.read", "operator.admin"} <= set(diagnosis["scopes"])
    assert "paired, device token stored" in diagnosis["device"]
    tokens = json.loads((state_dir / "identity" / "device-tokens.json").read_text())
    assert tokens["far"]["token"]
    # later runs reuse the stored identity and device token: no new request on the gateway
    assert cli("check", "--config", config, "-q").exit_code == 0 and pending_requests(far) == []

    # cleanup across the network closes idle sessions exactly as on loopback
    identities = IdentityStore(state_dir)
    idle = create_sessions(far, 3, identities)
    recent = []
    idle_after_ms = idle_after_between(
        far, lambda: recent.extend(create_sessions(far, 2, identities)) or recent, identities
    )
    result = cli("cleanup", "--config", config, "--json", "--idle-after", f"{idle_after_ms}ms")
    assert result.exit_code == 0, result.stdout + result.stderr
    assert {r["key"] for r in list_rows(far, identities)} == set(recent)
    closed = {r["key"] for r in audit.read(state_dir) if r["event"] == "outcome" and r["result"] == "archived"}
    assert closed == set(idle)  # archived: the default mode, on a release that can

    # a deleted identity is a new, clearly reported pairing request, not a crash
    (state_dir / "identity" / "device.json").unlink()
    again = cli("check", "--config", config, "--format", "plain")
    assert again.exit_code == 3 and "pairing required" in again.stdout and "Traceback" not in again.stderr
    approve_from(again.stdout, far)
    assert cli("check", "--config", config, "-q").exit_code == 0


def test_tls_verification_against_a_remote_gateway(remote, write_config, cli):
    secure = remote["secure"]
    assert secure.url.startswith("wss://198.18.")
    base = {"url": secure.url, "token": secure.token, "limit": 10}

    with_ca = write_config({"secure": {**base, "ca_file": str(remote["cert"])}})
    first = cli("check", "--config", with_ca, "--format", "plain")
    assert first.exit_code == 3 and "pairing required" in first.stdout  # TLS verified; the device is new
    approve_from(first.stdout, secure)
    assert cli("check", "--config", with_ca, "-q").exit_code == 0
    doctor = cli("doctor", "--config", with_ca, "--format", "plain")
    assert doctor.exit_code == 0 and f"tls: verified against {remote['cert']}" in doctor.stdout

    pinned = write_config({"secure": {**base, "fingerprint": remote["fingerprint"]}})
    assert cli("check", "--config", pinned, "-q").exit_code == 0

    neither = cli("check", "--config", write_config({"secure": base}), "--json")
    error = json.loads(neither.stdout)["hosts"][0]["error"]
    assert neither.exit_code == 3 and "TLS certificate" in error and "not trusted" in error

    wrong = cli("check", "--config", write_config({"secure": {**base, "fingerprint": "00" * 32}}), "--json")
    assert wrong.exit_code == 3 and "not the pinned sha256:" in json.loads(wrong.stdout)["hosts"][0]["error"]

    plain_url = secure.url.replace("wss://", "ws://")
    refused = cli("check", "--config", write_config({"secure": {**base, "url": plain_url}}))
    assert refused.exit_code == 3 and "plain ws:// to a non-loopback address" in refused.stderr


def test_check_and_cleanup_on_the_older_release(remote, write_config, cli, state_dir):
    old = remote["old"]
    config = write_config({"old": {"url": old.url, "token": old.token, "limit": 10}})
    doctor = cli("doctor", "--config", config, "--format", "plain")
    assert doctor.exit_code == 0 and f"server {OLD_RELEASE}, protocol 3" in doctor.stdout
    assert f"cleanup mode: delete ({OLD_RELEASE} has no archive)" in doctor.stdout  # no patchMany in its hello

    idle = create_sessions(old, 4)
    recent = []
    # a wide gap: the recent sessions must stay younger than the threshold through a check and a dry run, which
    # take seconds on a loaded machine (with 3 s between them the recent ones were idle too by the dry run)
    idle_after_ms = idle_after_between(old, lambda: recent.extend(create_sessions(old, 2)) or recent, gap_ms=12_000)
    check = cli("check", "--config", config, "--json")
    host = json.loads(check.stdout)["hosts"][0]
    assert check.exit_code == 0 and (host["sessions"], host["level"], host["server_version"]) == (6, "ok", OLD_RELEASE)

    dry = json.loads(
        cli("cleanup", "--config", config, "--dry-run", "--json", "--idle-after", f"{idle_after_ms}ms").stdout
    )
    assert {p["key"] for p in dry["hosts"][0]["plan"] if p["decision"] == "close"} == set(idle)
    result = cli("cleanup", "--config", config, "--json", "--idle-after", f"{idle_after_ms + 1000}ms")
    assert result.exit_code == 0, result.stdout + result.stderr
    assert {r["key"] for r in list_rows(old)} == set(recent)
    # the release rejects expectedSession* and has no archive: the guardian re-read the rows and deleted by key alone
    outcomes = [r for r in audit.read(state_dir) if r["event"] == "outcome"]
    assert {r["key"] for r in outcomes if r["result"] == "closed"} == set(idle)
    assert {r["action"] for r in outcomes} == {"delete"}
    assert f"deleted, not archived: {OLD_RELEASE} has no archive" in \
        cli("cleanup", "--config", config, "--format", "plain").stdout
    restore = cli("restore", "--config", config, "--key", idle[0])
    assert f"old purged {idle[0]} (deleted by a cleanup" in restore.stdout and "cannot be restored" in restore.stdout


def test_two_remote_gateways_pair_one_device_on_the_first_run(remote, write_config, cli, state_dir):
    """Both remote gateways polled at once on a fresh state dir: the same device asks each to pair, and
    once both approve, each one's device token is kept and no new request follows."""
    far, secure = remote["far"], remote["secure"]
    config = write_config({"far": {"url": far.url, "token": far.token, "limit": 10, "insecure": True},
                           "secure": {"url": secure.url, "token": secure.token, "limit": 10,
                                      "fingerprint": remote["fingerprint"]}})
    first = cli("check", "--config", config, "--format", "plain")
    assert first.exit_code == 3 and "Traceback" not in first.stderr, first.stdout + first.stderr
    device_id = json.loads((state_dir / "identity" / "device.json").read_text())["deviceId"]
    lines = {line.split(" ", 1)[0]: line for line in first.stdout.splitlines()}
    for name, gw in (("far", far), ("secure", secure)):
        assert f"pairing required: this guardian's device ({device_id[:12]}...)" in lines[name], lines[name]
        approve_from(lines[name], gw)
    second = cli("check", "--config", config, "--json")
    assert second.exit_code == 0, second.stdout + second.stderr
    tokens = json.loads((state_dir / "identity" / "device-tokens.json").read_text())
    assert sorted(tokens) == ["far", "secure"] and all(
        t["deviceId"] == device_id and t["token"] for t in tokens.values()
    )
    assert cli("check", "--config", config, "-q").exit_code == 0
    assert pending_requests(far) == [] and pending_requests(secure) == []
