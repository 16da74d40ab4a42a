"""wss:// against a fake gateway with a certificate the test makes: CA file, pin, refusals."""

from __future__ import annotations

import datetime
import hashlib
import json
import ssl

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from fake_gateway import FakeGateway


@pytest.fixture(scope="module")
def certificate(tmp_path_factory):
    """A self-signed certificate for 127.0.0.1: (cert file, key file, sha256 of its DER)."""
    folder = tmp_path_factory.mktemp("tls")
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "guardian-test-gateway")])
    now = datetime.datetime.now(datetime.timezone.utc)
    import ipaddress

    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=7))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    cert_file, key_file = folder / "cert.pem", folder / "key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_file, key_file, hashlib.sha256(cert.public_bytes(serialization.Encoding.DER)).hexdigest()


@pytest.fixture
def tls_fake(certificate):
    cert_file, key_file, _ = certificate
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert_file, key_file)
    with FakeGateway("secret", ssl_context=context) as gateway:
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
    code, host = check(cli, write_config({"a": {"url": tls_fake.url, "token": "secret", "limit": 10, "fingerprint": pin}}))
    assert code == 0 and host["sessions"] == 1


def test_untrusted_certificate_is_a_sentence_about_the_certificate(tls_fake, write_config, cli):
    code, host = check(cli, write_config({"a": {"url": tls_fake.url, "token": "secret", "limit": 10}}))
    assert code == 3 and "TLS certificate" in host["error"] and "not trusted" in host["error"]
    assert "set ca_file" in host["error"] and not tls_fake.connects


def test_wrong_fingerprint_fails_before_the_token_is_sent(tls_fake, write_config, cli):
    code, host = check(cli, write_config({"a": {"url": tls_fake.url, "token": "secret", "limit": 10, "fingerprint": "ab" * 32}}))
    assert code == 3 and "not the pinned sha256:" + "ab" * 32 in host["error"] and "nothing was sent" in host["error"]
    assert not tls_fake.connects


def test_doctor_names_the_tls_mode(tls_fake, certificate, write_config, cli):
    result = cli("doctor", "--config", write_config({"a": {"url": tls_fake.url, "token": "secret", "limit": 10,
                                                            "ca_file": str(certificate[0])}}), "--format", "plain")
    assert result.exit_code == 0 and f"tls: verified against {certificate[0]}" in result.stdout
