"""`guardian doctor` names exactly what is missing, with the command that fixes it."""

import json


def test_usable_host(fake, write_config, cli):
    result = cli("doctor", "--config", write_config({"a": {"url": fake.url, "token": "secret", "limit": 5}}), "--json")
    (host,) = json.loads(result.stdout)
    assert result.exit_code == 0 and host["usable"] and host["scopes"] == ["operator.read", "operator.admin"]
    assert host["token"] == "env TOKEN_A" and host["server_version"] == "2026.9.6" and host["protocol"] == 4


def test_scopes_cleared_without_a_device(fakes, write_config, cli):
    remote = fakes(remote=True)
    result = cli(
        "doctor",
        "--config",
        write_config({"a": {"url": remote.url, "token": "secret", "limit": 5, "device": False}}),
        "--format",
        "plain",
    )
    assert result.exit_code == 3 and "a (" in result.stdout and "NOT usable" in result.stdout
    assert "operator.read is missing, so `guardian check` cannot work" in result.stdout
    assert "operator.admin is missing, so `guardian cleanup` cannot work" in result.stdout
    assert "set `device: true` for a" in result.stdout


def test_pairing_then_usable_and_the_device_token_replaces_the_shared_token(fakes, write_config, cli, state_dir):
    remote = fakes(remote=True)
    config = write_config({"far": {"url": remote.url, "token": "secret", "limit": 5, "device": True}})
    first = cli("doctor", "--config", config, "--format", "plain")
    (request_id,) = remote.pending_pairings
    assert first.exit_code == 3 and f"openclaw devices approve {request_id}" in first.stdout
    remote.approve(request_id)
    second = cli("doctor", "--config", config, "--format", "plain")
    assert second.exit_code == 0 and "paired, device token stored" not in first.stdout
    assert "usable" in second.stdout
    # without the shared token, the stored device token is what authenticates
    tokenless = write_config({"far": {"url": remote.url, "limit": 5, "device": True}})
    third = cli("check", "--config", tokenless, "--json")
    assert third.exit_code == 0 and json.loads(third.stdout)["hosts"][0]["reachable"]
    assert remote.connects[-1]["params"]["auth"] == {
        "deviceToken": remote.paired_devices[next(iter(remote.paired_devices))]["deviceToken"]
    }


def test_a_changed_identity_file_is_a_new_clear_pairing_request(fakes, write_config, cli, state_dir):
    remote = fakes(remote=True)
    config = write_config({"far": {"url": remote.url, "token": "secret", "limit": 5, "device": True}})
    cli("check", "--config", config, "-q")
    remote.approve(next(iter(remote.pending_pairings)))
    assert cli("check", "--config", config, "-q").exit_code == 0
    (state_dir / "identity" / "device.json").write_text("{garbage")
    result = cli("check", "--config", config, "--format", "plain")
    assert result.exit_code == 3 and "device identity" in result.stderr and "moved it to" in result.stderr
    (request_id,) = remote.pending_pairings
    assert f"openclaw devices approve {request_id}" in result.stdout
