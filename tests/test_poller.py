"""The two drivers of a gateway session: gateway.drive (a blocking socket, one host) and poller.run_all (every host
at once, one thread). The promise: for every gateway, healthy or faulty, the poller gives what the blocking client
gives (the same counts, or the same one error sentence), whatever the other hosts under way at the same time do."""

from __future__ import annotations

import socket
import threading
from dataclasses import replace
from urllib.parse import urlsplit

import pytest
from conftest import server_tls, wait_until
from fake_gateway import FakeGateway
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from guardian.adapters import gateway, poller
from guardian.adapters.identity import IdentityStore
from guardian.commands.check import read_host_steps
from guardian.settings.model import Host, Secret

FAST = 0.6  # seconds: the timeout of hosts that never answer


def fake_host(gw: FakeGateway, name: str, token: str = "secret", **fields) -> Host:
    return Host(name=name, url=gw.url, limit=10, token=Secret(token, "test"), timeout=fields.pop("timeout", 5.0),
                **fields)


class TcpServer:
    """A TCP server on 127.0.0.1 that is not a gateway: it reads each request and sends `answer`, or, with None,
    holds the connection and never answers (a gateway hung before its upgrade)."""

    def __init__(self, answer: bytes | None):
        self.answer, self.held = answer, []
        self.server = socket.create_server(("127.0.0.1", 0))
        self.url = f"ws://127.0.0.1:{self.server.getsockname()[1]}"
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self):
        while True:
            try:
                client, _ = self.server.accept()
            except OSError:
                return
            self.held.append(client)
            if self.answer is not None:
                client.recv(65536)
                client.sendall(self.answer)

    def stop(self):
        self.server.close()
        for client in self.held:
            client.close()


HTTP_404 = b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


# Each scenario makes its gateway (fresh, so that a fault counted down is whole again) and the host to read.
SCENARIOS = {
    "healthy": lambda make, _: fake_host(make(sessions=3), "healthy"),
    "slow": lambda make, _: fake_host(make(sessions=2, latency=0.05), "slow"),
    "legacy 2026.4": lambda make, _: fake_host(make(sessions=2, legacy=True), "legacy"),
    "early requests refused": lambda make, _: fake_host(make(sessions=1, early_requests_refused=True), "early"),
    "starting up": lambda make, _: fake_host(make(sessions=1, unavailable_connects=2), "starting"),
    "overloaded": lambda make, _: fake_host(make(sessions=1, overloaded_requests=2), "overloaded"),
    "events and garbage": lambda make, _: fake_host(make(sessions=1, events_before_response=3,
                                                         garbage_before_response=True), "noisy"),
    "wrong token": lambda make, _: fake_host(make(), "token", token="wrong"),
    "silent": lambda make, _: fake_host(make(silent=True), "silent", timeout=FAST),
    "torn frames": lambda make, _: fake_host(make(truncate_responses=True), "torn", timeout=FAST),
    "drops after hello": lambda make, _: fake_host(make(drop_after_requests=0), "drops"),
    "drops after the challenge": lambda make, _: fake_host(make(close_after_challenge=True), "dropped"),
    "refused": lambda make, _: Host(name="refused", url=f"ws://127.0.0.1:{closed_port()}", limit=10,
                                    token=Secret("secret", "test")),
    "not a gateway's port": lambda make, _: Host(name="http", url=make.server(HTTP_404).url, limit=10,
                                                 token=Secret("secret", "test")),
    "hung before the upgrade": lambda make, _: Host(name="hung", url=make.server(None).url, limit=10,
                                                    token=Secret("secret", "test"), timeout=FAST),
    "tls with its CA": lambda make, cert: fake_host(make(sessions=1, tls=cert), "tls", ca_file=str(cert[0])),
    "tls untrusted": lambda make, cert: fake_host(make(tls=cert), "untrusted"),
    "tls pinned": lambda make, cert: fake_host(make(sessions=1, tls=cert), "pinned", fingerprint=cert[2]),
    "tls pinned wrong": lambda make, cert: fake_host(make(tls=cert), "pinned-wrong", fingerprint="ab" * 32),
}


@pytest.fixture
def make():
    started = []

    def gateway_with(sessions: int = 0, tls=None, **knobs) -> FakeGateway:
        gw = FakeGateway("secret", ssl_context=server_tls(tls) if tls else None,
                         **({"legacy": True} if knobs.pop("legacy", False) else {})).start()
        for _ in range(sessions):
            gw.add_session()
        for knob, value in knobs.items():
            setattr(gw, knob, value)
        started.append(gw)
        return gw

    def server(answer: bytes | None) -> TcpServer:
        started.append(TcpServer(answer))
        return started[-1]

    gateway_with.server = server
    yield gateway_with
    for server in started:
        server.stop()


def outcome(result, host: Host):
    """What a read came to, without what differs between two gateways made alike (their port) and two reads (the
    time they took)."""
    port = f":{urlsplit(host.url).port}"
    if isinstance(result, Exception):
        sentence = str(result).replace(port, ":PORT")
        if getattr(result, "code", None) == "CLOSED":  # when a dropped connection is seen (sending, or waiting;
            sentence = sentence.split(":")[0]  # a reset or an end of stream) is the packets' race on either driver
        return type(result).__name__, getattr(result, "code", None), sentence
    return replace(result, host=host.name, elapsed=0.0)


def on_blocking(steps):
    try:
        return gateway.drive(steps)
    except Exception as exc:
        return exc


def read(host: Host, identities: IdentityStore):
    return read_host_steps(host, 3600.0, identities)


def test_every_gateway_reads_the_same_on_the_poller_as_on_a_blocking_socket_all_at_once(make, certificate, tmp_path):
    """All the scenarios under way together on the poller (3 at a time), each against its own read alone on a
    blocking socket: the same Poll or the same error, host by host."""
    identities = IdentityStore(tmp_path)
    alone = {}
    for name, scenario in SCENARIOS.items():
        host = scenario(make, certificate)
        alone[name] = outcome(on_blocking(read(host, identities)), host)
    hosts = [scenario(make, certificate) for scenario in SCENARIOS.values()]
    together = poller.run_all([read(host, identities) for host in hosts], 3)
    assert dict(zip(SCENARIOS, map(outcome, together, hosts))) == alone
    # and what they came to is what each scenario is about
    codes = {name: result[1] for name, result in alone.items() if isinstance(result, tuple)}
    assert codes == {"wrong token": "INVALID_REQUEST", "silent": "TIMEOUT", "torn frames": "TIMEOUT",
                     "drops after hello": "CLOSED", "drops after the challenge": "CLOSED", "refused": "UNREACHABLE",
                     "not a gateway's port": "UNREACHABLE", "hung before the upgrade": "TIMEOUT",
                     "tls untrusted": "TLS", "tls pinned wrong": "TLS"}


def test_a_host_whose_steps_fail_unexpectedly_costs_the_others_nothing_and_leaves_no_socket_open(make, tmp_path):
    gw = make(sessions=1)
    identities = IdentityStore(tmp_path)

    def broken():
        yield from gateway.connect_steps(fake_host(gw, "broken"), [gateway.READ], identities)
        raise ValueError("a bug meeting this host's reply")

    results = poller.run_all([broken(), read(fake_host(gw, "fine"), identities)], 1)
    assert isinstance(results[0], ValueError)
    assert results[1].reading.count == 1
    wait_until(lambda: not gw._conns, timeout=5, what="the gateway to see both connections closed")


def test_the_poller_honours_the_cap_and_returns_every_result_in_order(make, tmp_path):
    gateways = [make(sessions=i) for i in range(7)]
    identities = IdentityStore(tmp_path)
    results = poller.run_all([read(fake_host(gw, f"h{i}"), identities) for i, gw in enumerate(gateways)], 2)
    assert [r.reading.count for r in results] == list(range(7))


def counting_steps(running: list, peak: list):
    running[0] += 1
    peak[0] = max(peak[0], running[0])
    try:
        yield gateway.Wait(0.0)
        return "done"
    finally:
        running[0] -= 1


@pytest.mark.parametrize("cap, open_files, most", [(512, 110, 10), (4, 1024, 4), (512, 50, 1)])
def test_no_more_hosts_under_way_than_the_cap_or_the_files_the_process_may_open(monkeypatch, cap, open_files, most):
    """Each host under way holds a socket: past the process's limit of open files a host would fail for want of
    one, so the poller keeps DESCRIPTORS_KEPT free and takes the rest of the hosts as others end."""
    import resource

    monkeypatch.setattr(resource, "getrlimit", lambda which: (open_files, resource.RLIM_INFINITY))
    running, peak = [0], [0]
    results = poller.run_all([counting_steps(running, peak) for _ in range(30)], cap)
    assert results == ["done"] * 30 and peak[0] == most


@pytest.mark.parametrize("concurrency, threads", [(512, 64), (64, 64), (4, 4)])
def test_cleanup_takes_at_most_64_hosts_at_once_whatever_the_check_reads(concurrency, threads):
    from guardian.settings.model import Check

    assert Check(concurrency=concurrency).threads == threads


def test_a_name_with_several_addresses_is_tried_address_by_address_on_both_drivers(make, tmp_path, monkeypatch):
    """As socket.create_connection does: the first address refuses (a gateway on 127.0.0.1 only, its name's ::1
    first), the next one answers; when every one refuses, the last refusal is the host's error."""
    gw, refused = make(sessions=2), closed_port()
    port = urlsplit(gw.url).port
    addresses = {"gateway.test": [refused, port], "nowhere.test": [refused, closed_port()]}

    def getaddrinfo(name, port, family=0, type=0, proto=0, flags=0):
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("127.0.0.1", p)) for p in addresses[name]]

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    identities = IdentityStore(tmp_path)
    found, nowhere = (fake_host(gw, name.split(".")[0]) for name in addresses)
    found, nowhere = (replace(h, url=f"ws://{name}:{port}") for h, name in zip((found, nowhere), addresses))
    for outcomes in ([on_blocking(read(found, identities)), on_blocking(read(nowhere, identities))],
                     poller.run_all([read(found, identities), read(nowhere, identities)], 2)):
        assert outcomes[0].reading.count == 2
        assert outcomes[1].code == "UNREACHABLE" and "refused the connection" in str(outcomes[1])


def test_a_fault_of_the_pollers_own_costs_only_the_host_it_met(make, tmp_path, monkeypatch):
    """Should the poller's own code fail on one host's socket (a bug), that host gets the error and the others
    their polls: one host's trouble never costs the check the rest."""
    fine, odd = make(sessions=1), make(sessions=2)
    identities = IdentityStore(tmp_path)
    service = poller._Poller._service

    def faulty(self, sock, events):
        if sock.host.name == "odd" and sock.stage == "open":
            raise RuntimeError("a bug meeting this host")
        return service(self, sock, events)

    monkeypatch.setattr(poller._Poller, "_service", faulty)
    results = poller.run_all([read(fake_host(fine, "fine"), identities), read(fake_host(odd, "odd"), identities)], 2)
    assert results[0].reading.count == 1
    assert isinstance(results[1], RuntimeError)


# faults that stay as they are from one read to the next (no count that runs down), and quick ones
STEADY = ["healthy", "slow", "legacy 2026.4", "early requests refused", "events and garbage", "wrong token",
          "torn frames", "drops after hello", "refused", "not a gateway's port", "tls with its CA", "tls untrusted",
          "tls pinned wrong"]


@pytest.fixture
def steady(make, certificate, tmp_path):
    """Each steady scenario's host, made once, and what it reads alone on a blocking socket."""
    identities = IdentityStore(tmp_path)
    hosts = {name: SCENARIOS[name](make, certificate) for name in STEADY}
    return hosts, identities, {name: outcome(on_blocking(read(host, identities)), host) for name, host in hosts.items()}


@settings(max_examples=12, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(names=st.lists(st.sampled_from(STEADY), min_size=1, max_size=12), cap=st.integers(1, 6))
def test_any_mix_of_gateways_at_any_cap_reads_each_as_it_reads_alone(steady, names, cap):
    hosts, identities, alone = steady
    together = poller.run_all([read(hosts[name], identities) for name in names], cap)
    assert [outcome(result, hosts[name]) for name, result in zip(names, together)] == [alone[n] for n in names]
