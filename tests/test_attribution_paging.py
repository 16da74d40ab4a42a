"""A split on a store larger than one page (issue 14's speed at warning): each check reads at most one page, the next
after the one the check before read, and the last page makes the split the store's rows make all at once, as of
the first page. A store that moves by more than a page under a pass begins it again; --no-notify advances nothing."""

from __future__ import annotations

import json
import math
from unittest import mock

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_attribution import as_reference, by_agent, listable, reference, stores
from test_cleanup import NOW, RULES_DRAWN

from guardian.adapters.gateway import drive
from guardian.commands import check as checking
from guardian.core import attribution
from guardian.core.records import SplitPass, Tally
from guardian.settings.model import Cleanup, Host
from guardian.settings.secrets import Secret

H = 3600 * 1000


@pytest.fixture(scope="module")
def gateway():
    from fake_gateway import FakeGateway

    with FakeGateway("secret") as fake:
        fake.clock = lambda: int(NOW * 1000)
        yield fake


def read(fake, tmp, rules: Cleanup, now: float, passes: dict, last_as_of: dict):
    """One check's read of host t440 (at 1 % usage: a split is due only when none is kept, or a pass is under way)."""
    from guardian.adapters.identity import IdentityStore

    host = Host(name="t440", url=fake.url, limit=100_000, token=Secret("secret", "test"))
    splitting = checking.Splitting(rules=rules, now=now, warning=80.0, every=3600.0, last_as_of=last_as_of,
                                   passes=passes)
    return drive(checking.read_host_steps(host, rules.idle_after, IdentityStore(tmp), splitting))


def pages_listed(fake) -> int:
    return sum(1 for r in fake.requests if r["method"] == "sessions.list" and r["params"].get("limit") != 1)


@settings(suppress_health_check=[HealthCheck.function_scoped_fixture], deadline=None)
@given(store=stores(), rules=RULES_DRAWN, page=st.integers(3, 7))
def test_consecutive_checks_make_the_split_of_every_row_at_once_a_page_each(gateway, tmp_path, store, rules, page):
    """Checks 30 s apart, one page each, until the pass completes: the split is exactly attribution.split of every
    row as of the first page's time, and it took as many checks as the store has pages."""
    gateway.sessions = {r["key"]: dict(r) for r in store}
    rows = listable(store)
    passes, polls = {}, []
    with mock.patch.object(checking, "SPLIT_PAGE", page):
        while not polls or polls[-1].split is None:
            gateway.requests.clear()
            # after the first check a split is kept (fresh): only the pass under way lists rows
            polls.append(read(gateway, tmp_path, rules, NOW + 30 * len(polls), passes,
                              {"t440": NOW} if polls else {}))
            assert pages_listed(gateway) == 1
            passes = {"t440": polls[-1].split_pass} if polls[-1].split_pass else {}
            assert len(polls) <= math.ceil(len(rows) / page) + 1
    assert len(polls) == max(1, math.ceil(len(rows) / page))
    assert polls[-1].split_pass is None
    assert polls[-1].split == attribution.split(rows, by_agent(store), rules, NOW)
    assert as_reference(polls[-1].split) == reference(store, rules)


def sessions(fake, agent: str, count: int, now: float = NOW) -> None:
    """`count` sessions of `agent`, 5 hours idle at `now`."""
    for i in range(count):
        fake.add_session(f"agent:{agent}:{i}", agent=agent, updated_at=int(now * 1000 - (5 * H + i * 1000)))


def test_a_store_that_grows_by_more_than_a_page_mid_pass_begins_it_again(gateway, tmp_path):
    gateway.sessions = {}
    sessions(gateway, "sales", 12)  # three pages of 5
    rules = Cleanup()
    with mock.patch.object(checking, "SPLIT_PAGE", 5):
        first = read(gateway, tmp_path, rules, NOW, {}, {})
        assert first.split is None and first.split_pass.offset == 5
        sessions(gateway, "support", 6)  # 6 more: past one page's worth, the offsets no longer mean the same rows
        moved = read(gateway, tmp_path, rules, NOW + 30, {"t440": first.split_pass}, {})
        assert moved.split is None and moved.split_pass is None  # nothing assembled from the two stores
        gateway.requests.clear()
        again = read(gateway, tmp_path, rules, NOW + 60, {}, {})
        assert again.split_pass.started == NOW + 60 and again.split_pass.total == 18
        assert all("offset" not in r["params"] for r in gateway.requests)  # from the first page


@pytest.mark.parametrize("listing, total, age, resumed", [
    ("all", 5000, 0.0, True),
    ("all", 5000, attribution.PASS_MAX_AGE - 1, True),
    ("all", 5000, attribution.PASS_MAX_AGE, False),  # too much of the store may have moved under it
    ("all", 5000, -1.0, False),  # the clock went back: its time says nothing
    ("system", 5000, 0.0, False),  # the gateway no longer lists the archive: another listing's offsets
    ("all", 20_000, attribution.PASS_MAX_AGE, True),  # 20 pages at a check every 30 s: the pass must be able to end
    ("all", 20_000, 20 * attribution.PAGE_MAX_AGE, False),
])
def test_a_pass_goes_on_while_young_and_on_the_same_listing(listing, total, age, resumed):
    under_way = SplitPass("all", 1000, total, NOW, Tally({}, {}))
    assert (attribution.resumed(under_way, listing, NOW + age, 1000) is under_way) is resumed


def test_check_shows_the_latest_complete_split_while_a_pass_is_under_way_and_no_notify_advances_nothing(
        fake, write_config, cli, state_dir, monkeypatch):
    import time

    monkeypatch.setattr(checking, "SPLIT_PAGE", 5)
    sessions(fake, "sales", 8, time.time())
    sessions(fake, "support", 3, time.time())  # 11 rows: three pages
    config = write_config({"t440": {"url": fake.url, "token": "secret", "limit": 1000}}, attribution={"every": "1ms"})

    def check(*args):
        return json.loads(cli("check", "--config", config, "--json", *args).stdout)["hosts"][0]

    first = check()  # a first pass on a big store: status's counts, fresh, no idle or closable yet
    assert first["holders_as_of"] is None
    assert {h["agent"]: (h["sessions"], h["idle"]) for h in first["holders"]} == {"sales": (8, None),
                                                                                  "support": (3, None)}
    kept = (state_dir / "splits.json").read_bytes()
    fake.requests.clear()
    assert check("--no-notify")["holders_as_of"] is None
    assert pages_listed(fake) <= 1 and (state_dir / "splits.json").read_bytes() == kept
    check()
    done = check()  # the third page: the split, as of the first page's check
    assert done["holders_as_of"] is not None
    assert {h["agent"]: (h["sessions"], h["idle"], h["closable"]) for h in done["holders"]} == {
        "sales": (8, 8, 8), "support": (3, 3, 3)}
    following = check()  # the next pass under way: the complete split still shows, with its as_of
    assert following["holders_as_of"] == done["holders_as_of"] and following["holders"] == done["holders"]


def test_a_kept_pass_that_cannot_be_read_leaves_the_split_readable(state_dir):
    from guardian.adapters.splits import SplitCache
    from guardian.core.records import Share, Split

    cache = SplitCache(state_dir)
    split = Split(NOW, (Share("sales", 3, 1, 1),), (Share("direct", 3, 1, 1),))
    going = SplitPass("all", 5, 12, NOW, Tally({"sales": (5, 2, 1)}, {"direct": (5, 2, 1)}))
    cache.write({"t440": split}, {"t440": going, "edge": going})
    assert cache.read() == ({"t440": split}, {"t440": going, "edge": going})
    data = json.loads(cache.path.read_text())
    data["t440"]["pass"]["tally"]["agents"]["sales"] = [5, 2]
    cache.path.write_text(json.dumps(data))
    assert cache.read() == ({"t440": split}, {"edge": going})
