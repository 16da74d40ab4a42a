"""Scale (issue 18): `--shard K/N` splits the hosts by a stable hash; check.concurrency caps the polls at once."""

from __future__ import annotations

import json
import threading
import time

import pytest
from hypothesis import given
from hypothesis import strategies as st

from guardian.adapters import gateway
from guardian.commands import check as checking
from guardian.settings.load import load
from guardian.settings.model import ConfigError, in_shard, parse_shard

# --- sharding ---------------------------------------------------------------------------------------------


@given(names=st.lists(st.from_regex(r"[a-z0-9][a-z0-9.-]{0,20}", fullmatch=True), unique=True, max_size=40),
       n=st.integers(1, 9))
def test_shards_partition_the_hosts(names, n):
    shards = [{name for name in names if in_shard(name, k, n)} for k in range(1, n + 1)]
    assert sum(len(shard) for shard in shards) == len(names)
    assert set().union(*shards) == set(names)


def test_shards_are_stable_across_processes():
    """A hash of the name alone: the same split on every machine, in every run (Python's hash() is not)."""
    assert [k for k in (1, 2) if in_shard("pc-a", k, 2)] == [1]
    assert [k for k in (1, 2) if in_shard("t440", k, 2)] == [2]
    assert [k for k in (1, 2, 3) if in_shard("h1", k, 3)] == [1]


@pytest.mark.parametrize("text", ["0/2", "3/2", "1", "a/b", "1/0"])
def test_a_bad_shard_is_one_sentence_and_exit_3_for_check(text, cli):
    result = cli("check", "--shard", text, "--limit", "5")
    assert result.exit_code == 3 and "shard" in result.stderr and "Traceback" not in result.stderr


def test_parse_shard():
    assert parse_shard(" 2/3 ") == (2, 3)


def test_check_with_a_shard_polls_its_hosts_and_the_pools_wholly_inside(fakes, write_config, cli):
    gateways = {name: fakes() for name in ("pc-a", "t440", "h2")}  # shard 1/2: pc-a, h2; 2/2: t440
    config = write_config({name: {"url": gw.url, "token": "secret", "limit": 10} for name, gw in gateways.items()},
                          pools={"inside": {"hosts": ["pc-a", "h2"], "limit": 20},
                                 "across": {"hosts": ["pc-a", "t440"], "limit": 20}})
    first = json.loads(cli("check", "--config", config, "--json", "--shard", "1/2").stdout)
    assert [h["name"] for h in first["hosts"]] == ["pc-a", "h2"] and [p["name"] for p in first["pools"]] == ["inside"]
    assert gateways["t440"].connects == []
    second = json.loads(cli("check", "--config", config, "--json", "--shard", "2/2").stdout)
    assert [h["name"] for h in second["hosts"]] == ["t440"] and second["pools"] == []
    assert len(gateways["pc-a"].connects) == 1


# --- check.concurrency ------------------------------------------------------------------------------------


def test_concurrently_runs_at_most_cap_at_once_and_exactly_cap_when_there_is_work():
    cap, peak, running, guard = 5, [0], [0], threading.Lock()
    together = threading.Barrier(cap, timeout=20)  # breaks unless `cap` items do run at once

    def work(item):
        with guard:
            running[0] += 1
            peak[0] = max(peak[0], running[0])
        together.wait()
        with guard:
            running[0] -= 1
        return item * 2

    assert gateway.concurrently(work, list(range(4 * cap)), cap) == [i * 2 for i in range(4 * cap)]
    assert peak[0] == cap


def test_a_check_reads_check_concurrency_hosts_at_once_all_on_its_own_thread(fakes, write_config, monkeypatch):
    """check.concurrency caps the hosts under way at once (and they fill it while there is work); none of them
    needs a thread: every host's steps run on the check's own."""
    gateways = [fakes() for _ in range(24)]
    config = write_config({f"h{i}": {"url": gw.url, "token": "secret", "limit": 10} for i, gw in enumerate(gateways)},
                          check={"concurrency": 4})
    peak, running, seen, real_read = [0], [0], set(), checking.read_host_steps

    def counted(*args):
        running[0] += 1
        peak[0] = max(peak[0], running[0])
        seen.add((threading.get_ident(), threading.active_count()))
        try:
            return (yield from real_read(*args))
        finally:
            running[0] -= 1

    monkeypatch.setattr(checking, "read_host_steps", counted)
    before = threading.active_count()
    report = checking.run(load(config), None, time.time(), act=False)
    assert all(s.reading is not None for s in report.subjects) and len(report.subjects) == 24
    assert peak[0] == 4
    assert seen == {(threading.get_ident(), before)}


def test_check_concurrency_must_be_a_positive_number(write_config, fake):
    with pytest.raises(ConfigError, match="check.concurrency.*at least 1"):
        load(write_config({"gw": {"url": fake.url, "token": "secret", "limit": 10}}, check={"concurrency": 0}))
