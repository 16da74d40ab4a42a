"""wss:// against a fake gateway with a certificate the test makes: CA file, pin, refusals."""

from __future__ import annotations

import json

import pytest
from conftest import server_tls
from fake_gateway import FakeGateway


@pytest.fixture
def tls_fake(certificate):
    with FakeGateway("secret", ssl_context=server_tls(certificate)) as gateway:
        gateway.add_session()
        yield gateway


def check(cli, config):
    result = cli("check", "--config", config, "--json")
    return result.exit_code, json.loads(result.stdout)["hosts"][0]


def test_ca_file_verifies(tls_fake, certificate, write_config, cli):
    code, host = check(cli, write_config({"a": {"url": tls_fake.url, "token": "secret", "limit": 10,
                                                 "ca_file": str(certificate[0])}}))
    assert code == 0 and host["sessions"] == 1


def test_pinned_fingerprint_verifies(tls_fake, certificate, write_config, cli):
    pin = ":".join(certificate[2][i:i + 2] for i in range(0, 64, 2)).upper()  # the colon form openssl prints
    code, host = check(
        cli, write_config({"a": {"url": tls_fake.url, "token": "secret", "limit": 10, "fingerprint": pin}})
    )
    assert code == 0 and host["sessions"] == 1


def test_untrusted_certificate_is_a_sentence_about_the_certificate(tls_fake, certificate, write_config, cli):
    code, host = check(cli, write_config({"a": {"url": tls_fake.url, "token": "secret", "limit": 10}}))
    assert code == 3 and "TLS certificate" in host["error"] and "not trusted" in host["error"]
    assert "set ca_file" in host["error"] and not tls_fake.connects
    # the fingerprint it presented, ready to compare and pin: the pin then works
    presented = host["error"].rsplit("fingerprint: ", 1)[1]
    assert presented.replace(":", "").lower() == certificate[2]
    code, host = check(
        cli, write_config({"a": {"url": tls_fake.url, "token": "secret", "limit": 10, "fingerprint": presented}})
    )
    assert code == 0


def test_wrong_fingerprint_fails_before_the_token_is_sent(tls_fake, write_config, cli):
    code, host = check(
        cli, write_config({"a": {"url": tls_fake.url, "token": "secret", "limit": 10, "fingerprint": "ab" * 32}})
    )
    assert code == 3 and "not the pinned sha256:" + "ab" * 32 in host["error"] and "nothing was sent" in host["error"]
    assert not tls_fake.connects


def test_doctor_names_the_tls_mode(tls_fake, certificate, write_config, cli):
    result = cli("doctor", "--config", write_config({"a": {"url": tls_fake.url, "token": "secret", "limit": 10,
                                                            "ca_file": str(certificate[0])}}), "--format", "plain")
    assert result.exit_code == 0 and f"tls: verified against {certificate[0]}" in result.stdout
