"""Who holds a host's sessions: per agent and per kind, how many, how many are idle past that agent's idle_after,
how many cleanup would close. Pure: (rows, status's per-agent counts, rules, now) -> a Split. A store larger than
one page is split a page a check: each page's Tally adds to a SplitPass (resumed, advance), the last one finishes it.

Cleanup's own rules decide what is closable (planner.plan, without the per-run cap): nothing here repeats them.
What usage counts (`hosts.<name>.count`) is the sum of some of the classes below; see usage_count.
"""

from __future__ import annotations

import math
from dataclasses import replace

from guardian.core.planner import agent_of, flagged, plan
from guardian.core.records import AgentPeriod, Share, Split, SplitPass, Tally
from guardian.settings.model import COUNTABLE, Cleanup
from guardian.settings.units import duration_text

# What a host's usage can count (settings.model.COUNTABLE), by what the gateway's cheap counts tell apart:
# listed: what sessions.list shows (direct, group, sub-agent and cron-job sessions, not archived);
# cron-run: agent:<id>:cron:<job>:run:<run>, never listed, counted by status, pruned by OpenClaw itself;
# system: the `global` and `unknown` rows, listed only on request;
# archived: archived by cleanup or an operator, until purged: status counts them, the listing does not.
LISTED, CRON_RUN, SYSTEM, ARCHIVED = COUNTABLE

# The kinds a split shows: the listed ones by the row's own classification, then the classes above.
DIRECT, GROUP, SUBAGENT, CRON = "direct", "group", "subagent", "cron"
KINDS = (DIRECT, GROUP, SUBAGENT, CRON, CRON_RUN, SYSTEM, ARCHIVED)
OTHER = "other"  # what the agents past the top N hold, together (metrics)


def kind_of(row: dict) -> str:
    """The kind a listed row is, by the gateway's classification, else by the shape of its key (2026.4 rows have
    neither kind nor classification for sub-agents and cron jobs)."""
    if flagged(row, "archived"):
        return ARCHIVED
    key = str(row.get("key", ""))
    if row.get("kind") in ("global", "unknown") or key in ("global", "unknown"):
        return SYSTEM
    parts = key.split(":")
    classification = row.get("classification")
    if classification == "subagent" or (classification is None and "subagent" in parts[2:3]):
        return SUBAGENT
    if classification == "cron" or (classification is None and "cron" in parts[2:3]):
        return CRON
    return GROUP if row.get("kind") == "group" else DIRECT


def tally(rows: list[dict], rules: Cleanup, now: float, main_key: str | None = None,
          default_agent: str = "main") -> Tally:
    """The rows' counts toward a split (any listable rows: archived, global and unknown ones too), judged as of
    `now` by cleanup's own rules without its per-run cap, one verdict a row: pages add up (Tally.__add__).
    A row with no agent (global, unknown) counts under `default_agent`, as status counts it."""
    live = [r for r in rows if not flagged(r, "archived")]
    verdicts = plan(live, replace(rules, max_per_run=len(live)), now, main_key)  # closable before the cap
    agents: dict[str, list[int]] = {}
    kinds: dict[str, list[int]] = {}
    kind_of_row = [kind_of(r) for r in rows]  # once a row: a split of 5,000 rows must cost well under 50 ms
    kind_by_key = {str(r.get("key")): kind for r, kind in zip(rows, kind_of_row) if kind != ARCHIVED}
    for verdict in verdicts:
        counts = (agents.setdefault(verdict.agent or default_agent, [0, 0, 0]),
                  kinds.setdefault(kind_by_key[verdict.key], [0, 0, 0]))
        idle = verdict.idle_seconds is not None and verdict.idle_seconds > rules.idle_after_for(verdict.agent)
        for count in counts:
            count[0] += 1
            count[1] += idle
            count[2] += verdict.close
    for row in rows:
        if flagged(row, "archived"):  # listed, never idle nor closable: cleanup leaves the archive alone
            agents.setdefault(agent_of(row) or default_agent, [0, 0, 0])[0] += 1
            kinds.setdefault(ARCHIVED, [0, 0, 0])[0] += 1
    return Tally({a: tuple(c) for a, c in agents.items()}, {k: tuple(c) for k, c in kinds.items()})


def finish(counted: Tally, by_agent: dict | None, as_of: float) -> Split:
    """The split the rows' tally makes beside status's per-agent counts, which also count the cron runs no listing
    shows: an agent's sessions are status's count when there is one (this instant's), the cron runs each agent
    holds beyond its rows are its kind `cron-run`."""
    listed = {a: c[0] for a, c in counted.agents.items()}
    sessions = dict(listed) if by_agent is None else {**{a: 0 for a in listed}, **by_agent}
    agents = tuple(sorted((Share(a, n, *counted.agents.get(a, (0, 0, 0))[1:]) for a, n in sessions.items()),
                          key=lambda s: (-s.sessions, s.name)))
    kinds = dict(counted.kinds)
    if by_agent is not None:
        kinds[CRON_RUN] = (sum(max(0, n - listed.get(a, 0)) for a, n in by_agent.items()), 0, 0)
    shares = tuple(Share(k, kinds[k][0], *((None, None) if k in (CRON_RUN, ARCHIVED) else kinds[k][1:]))
                   for k in KINDS if kinds.get(k, (0,))[0])
    return Split(as_of=as_of, agents=agents, kinds=shares)


def split(rows: list[dict], by_agent: dict | None, rules: Cleanup, now: float, main_key: str | None = None,
          default_agent: str = "main") -> Split:
    """The split of `rows` (every listable row) as of `now`, beside status's per-agent counts (finish)."""
    return finish(tally(rows, rules, now, main_key, default_agent), by_agent, now)


# A pass pages a store that changes under it: a session that moves (the listing is most recent first) shifts the
# offsets, so a row may be read twice or missed. Ten minutes bounds how much of that a split can hold (a pass of
# 5,000 rows at a check a minute takes five); a store whose total moved by more than a page is begun again. A store
# of more pages than that gets two minutes a page, or a pass would never end on it (20 pages at a check every 30 s).
PASS_MAX_AGE = 600.0
PAGE_MAX_AGE = 120.0


def resumed(under_way: SplitPass | None, listing: str, now: float, page_size: int) -> SplitPass | None:
    """The pass a check goes on with: the host's, while it pages the same listing and began less than its age limit
    ago (PASS_MAX_AGE, or PAGE_MAX_AGE a page for a larger store); None (begin anew) otherwise."""
    if under_way is None or under_way.listing != listing:
        return None
    limit = max(PASS_MAX_AGE, math.ceil(under_way.total / page_size) * PAGE_MAX_AGE)
    return under_way if 0 <= now - under_way.started < limit else None


def advance(under_way: SplitPass | None, listing: str, page: Tally, total: int, page_size: int,
            now: float) -> tuple[SplitPass | None, SplitPass | None]:
    """One page's tally added to the pass under way (or the first page of a new one) at the listing's `total` now:
    (the pass complete, None) when it was the last page, (None, the pass) while pages are left, (None, None) when
    the total moved by more than a page since the pass began (its pages would not make one store: begun again)."""
    if under_way is None:
        under_way = SplitPass(listing, 0, total, now, Tally({}, {}))
    elif abs(total - under_way.total) > page_size:
        return None, None
    read = replace(under_way, offset=under_way.offset + page_size, tally=under_way.tally + page)
    return (read, None) if read.offset >= total else (None, read)


def holders(split_: Split | None, by_agent: dict | None) -> Split | None:
    """The split to show now: this check's per-agent counts (status's, fresh) with the idle and closable figures of
    the latest split (as of when it was counted); None when neither is known."""
    if by_agent is None:
        return split_
    known = {s.name: s for s in split_.agents} if split_ else {}
    agents = tuple(sorted((Share(a, n, known[a].idle if a in known else None,
                                 known[a].closable if a in known else None) for a, n in by_agent.items()),
                          key=lambda s: (-s.sessions, s.name)))
    if split_ is None:
        return Split(as_of=None, agents=agents, kinds=())
    return replace(split_, agents=agents)


def pooled(members: list[Split]) -> Split | None:
    """A pool's holders: its reachable members' holders summed per agent and per kind. A figure one member does not
    know (None) is unknown for the pool; as of the oldest member's split (None while one has none)."""
    if not members:
        return None

    def summed(groups: list[tuple[Share, ...]]) -> tuple[Share, ...]:
        names = list(dict.fromkeys(s.name for group in groups for s in group))
        return tuple(_summed(n, [s for group in groups for s in group if s.name == n]) for n in names)

    agents = tuple(sorted(summed([m.agents for m in members]), key=lambda s: (-s.sessions, s.name)))
    kinds = summed([m.kinds for m in members])
    kinds = tuple(sorted(kinds, key=lambda s: KINDS.index(s.name) if s.name in KINDS else len(KINDS)))
    as_of = None if any(m.as_of is None for m in members) else min(m.as_of for m in members)
    return Split(as_of=as_of, agents=agents, kinds=kinds)


def top(shares: tuple[Share, ...], n: int) -> list[Share]:
    """The first n shares (most sessions first) and what the rest hold together as `other` (bounded metrics)."""
    shown, rest = _top_and_rest(shares, n, lambda s: s.name)
    if rest:
        shown.append(_summed(OTHER, rest))
    return shown


def _summed(name: str, shares: list[Share]) -> Share:
    """`shares` as one, named `name`: idle or closable unknown (None) where one of them does not know it."""
    def total(values):
        return None if any(v is None for v in values) else sum(values)

    return Share(name, sum(s.sessions for s in shares), total([s.idle for s in shares]),
                 total([s.closable for s in shares]))


def due(usage: float, warning: float, last_as_of: float | None, every: float, now: float) -> bool:
    """Whether this check lists rows for a fresh split: the host is at warning or above (who holds them matters
    now), or the latest split is older than `attribution.every` (or there is none)."""
    return usage >= warning or last_as_of is None or now - last_as_of >= every


def usage_count(classes: dict, count: tuple[str, ...]) -> int:
    """What a host's usage counts: the sum of the classes named in `hosts.<name>.count`."""
    return sum(classes[name] for name in count)


def growth(earlier: dict, latest: dict) -> list[tuple[str, int]]:
    """Per-agent change from `earlier` to `latest` counts, the largest rise first (only the agents that rose)."""
    rises = [(agent, n - earlier.get(agent, 0)) for agent, n in latest.items() if n > earlier.get(agent, 0)]
    return sorted(rises, key=lambda r: (-r[1], r[0]))


def growth_text(rises: list[tuple[str, int]], window: float, top: int = 2) -> str:
    """'sales +18, support +4 in the last 1h': which agents grew most over the forecast window; '' when none rose."""
    if not rises:
        return ""
    def printable(agent: str) -> str:  # an agent id comes from the gateway
        return "".join(c if c.isprintable() else "?" for c in agent[:40])

    agents = ", ".join(f"{printable(agent)} {n:+d}" for agent, n in rises[:top])
    return f"{agents} in the last {duration_text(window)}"


def _top_and_rest(ranked, n: int, name) -> tuple[list, list]:
    """The first n of `ranked` and the rest, where an agent really called `other` always goes with the rest: its
    name is the rest's label, and one label twice would be two series of one name (node_exporter drops the file)."""
    named = [item for item in ranked if name(item) != OTHER]
    return named[:n], [*named[n:], *(item for item in ranked if name(item) == OTHER)]


def agents_of_period(counts: list[tuple[str, int, int, int]], closed: dict[str, int], top: int) -> list[AgentPeriod]:
    """A host's agents over a report's period, from its (agent, now, max, first) counts and the sessions cleanup
    closed by agent: the `top` holding most now (then by name), and the rest summed as `other` (bounded output).
    An agent only the audit log names (closed, then gone from every check) holds none."""
    periods = {agent: AgentPeriod(agent, now, most, now - first, closed.get(agent, 0))
               for agent, now, most, first in counts}
    periods.update({agent: AgentPeriod(agent, 0, 0, 0, n) for agent, n in closed.items() if agent not in periods})
    ranked = sorted(periods.values(), key=lambda p: (-p.now, p.agent))
    shown, rest = _top_and_rest(ranked, top, lambda p: p.agent)
    if rest:
        shown.append(AgentPeriod(OTHER, sum(p.now for p in rest), sum(p.max for p in rest),
                                 sum(p.growth for p in rest), sum(p.closed for p in rest)))
    return shown
