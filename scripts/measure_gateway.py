#!/usr/bin/env python3
"""Measure on real OpenClaw gateways what issues 14 (what the limit counts, agents) and 17 (archive,
purge, restore, batches, older releases) need to know. Prints every figure; docs/gateway-measurements.md
records a run.

    .venv/bin/python scripts/measure_gateway.py [--parts kinds,archive,active,old,scale] [--scale 1000,5000]
                                                [--runs 7] [--json out.json]

Parts
    kinds    which session kinds `sessions.list` leaves out, how a client sees and counts them, whether
             delete / archive reach them; status / health / list counts compared (2026.9.6, 3 agents)
    archive  200 sessions: archive one at a time, pipelined, `sessions.patchMany` in batches of 10/50/100/200;
             restore (and `updatedAt`); purge with `sessions.delete {archivedOnly}`; `sessions.describe`
    active   an archive patch on a session whose run is held open (scripts/fake_model.py)
    old      2026.4.29: archive, archivedOnly, patchMany, describe, status.sessions.byAgent, cron runs
    scale    cost of `status`, `health`, `sessions.list {limit: 1}` and `{limit: 1000}` at each store size

Times are wall-clock seconds from this client, one connection, medians of `--runs` repeats unless
said otherwise. The machine is shared (2 cores, other work running): compare figures within one run.
Every gateway started here is stopped at the end, also on failure.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))

import fake_model  # noqa: E402
import peer  # noqa: E402

from guardian.adapters import gateway  # noqa: E402
from guardian.settings.model import Host  # noqa: E402
from guardian.settings.secrets import Secret  # noqa: E402

SCOPES = [gateway.READ, gateway.WRITE, gateway.ADMIN]
# With agents.entries set, only the agents named there exist: "main" must be listed too (measured: without it,
# `agent:main:*` keys are refused with "Unknown agent id").
AGENTS = {"main": {"name": "Main"}, "sales": {"name": "Sales"}, "support": {"name": "Support"}}
SENTINELS = {"global", "unknown"}  # keys without an agent: with several agents every call needs agentId
# One key per kind of session a client can create by key (the gateway classifies by key shape).
KIND_KEYS = {
    "main": "agent:main:main",
    "direct": "agent:main:measure-direct",
    "other agent (sales)": "agent:sales:measure-1",
    "other agent (support)": "agent:support:measure-1",
    "cron job": "agent:main:cron:job1",
    "cron run": "agent:main:cron:job1:run:abc",
    "cron run (sales)": "agent:sales:cron:job2:run:def",
    "subagent": "agent:main:subagent:measure-child",
    "channel group": "agent:main:telegram:group:-100123",
    "channel": "agent:main:discord:channel:42",
    "channel thread": "agent:main:slack:channel:c1:thread:1700000000.0001",
    "channel direct": "agent:main:telegram:direct:555",
    "hook": "agent:main:hook:gmail:abc",
    "acp": "agent:main:acp:measure",
    "global": "global",
    "unknown": "unknown",
}
RESULTS: dict = {}
OVERLOADS: list = []  # reads refused while the gateway was overloaded, and how long until it answered


def say(*parts) -> None:
    print(*parts, flush=True)


def record(section: str, name: str, value) -> None:
    RESULTS.setdefault(section, {})[name] = value
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    say(f"[{section}] {name}: {text}")


def owned(key: str, **params) -> dict:
    """Params for a call on `key`, with the agent a sentinel key needs on a multi-agent gateway."""
    return {"key": key, **({"agentId": "main"} if key in SENTINELS else {}), **params}


def connect(gw, timeout: float = 120):
    host = Host(name=gw.name, url=gw.url, limit=1, token=Secret(gw.token, "measure"), timeout=timeout, insecure=True)
    return gateway.connect(host, SCOPES)


def outcome(answer) -> dict:
    """A payload, or the gateway's error as {error: code, message, details}."""
    if isinstance(answer, gateway.GatewayError):
        return {"error": answer.code, "message": answer.message, "details": answer.details,
                **({"retryable": True, "retryAfterMs": answer.retry_after_ms} if answer.retryable else {})}
    return answer


def attempt(connection, method: str, params: dict | None = None):
    return outcome(connection.call_many([(method, params)])[0])


def timed(connection, method: str, params: dict | None = None) -> tuple[float, object]:
    start = time.perf_counter()
    answer = attempt(connection, method, params)
    return time.perf_counter() - start, answer


def median_of(connection, method: str, params: dict | None, runs: int) -> dict:
    settle(connection)
    answers = [timed(connection, method, params) for _ in range(runs)]
    times = [elapsed for elapsed, _ in answers]
    errors = [answer for _, answer in answers if "error" in answer]
    return {"median_s": round(statistics.median(times), 4), "min_s": round(min(times), 4),
            "max_s": round(max(times), 4), "runs": runs,
            **({"errors": len(errors), "error": errors[0]} if errors else {})}


def bulk(connection, section: str, name: str, value) -> None:
    """Record a bulk phase, then how long the gateway took to answer reads again."""
    record(section, name, value)
    record(section, f"{name}: settled after", settle(connection))


def settle(connection, timeout: float = 300) -> dict:
    """Wait until the gateway answers a read again (bulk archives leave its worker pool overloaded for a while)."""
    start = time.perf_counter()
    refused = []
    while time.perf_counter() - start < timeout:
        answer = attempt(connection, "sessions.list", {"limit": 1, "archived": "all"})
        if "error" not in answer:
            break
        refused.append(answer)
        time.sleep(0.2)
    return {"waited_s": round(time.perf_counter() - start, 2), "refused_reads": len(refused),
            **({"refusal": refused[0]} if refused else {})}


def per_call(times: list[float]) -> dict:
    return {"n": len(times), "total_s": round(sum(times), 3), "median_s": round(statistics.median(times), 4),
            "max_s": round(max(times), 4)}


def rows(connection, **params) -> list[dict]:
    answer = attempt(connection, "sessions.list", {"limit": 10000, **params})
    if "error" in answer:  # measured: "worker task capacity reached" for a while after bulk writes
        OVERLOADS.append({"refused": answer["message"], "params": params, **settle(connection)})
        say(f"[overload] {OVERLOADS[-1]}")
        answer = attempt(connection, "sessions.list", {"limit": 10000, **params})
        if "error" in answer:
            raise RuntimeError(f"sessions.list {params} failed: {answer}")
    return answer["sessions"]


def counts(connection) -> dict:
    status = attempt(connection, "status", {})
    health = attempt(connection, "health", {})
    listing = attempt(connection, "sessions.list", {"limit": 1})
    everything = attempt(connection, "sessions.list", {"limit": 1, "archived": "all", "includeGlobal": True,
                                                         "includeUnknown": True})
    sessions = status.get("sessions", {}) if isinstance(status, dict) else {}
    return {
        "status.sessions.count": sessions.get("count"),
        "status.sessions.byAgent": [(a.get("agentId"), a.get("count")) for a in sessions.get("byAgent", [])],
        "health.sessions.count": (health.get("sessions") or {}).get("count"),
        "health.agents": [(a.get("agentId"), (a.get("sessions") or {}).get("count")) for a in health.get("agents", [])],
        "sessions.list totalCount": listing.get("totalCount"),
        "sessions.list totalCount (archived all, global, unknown)": everything.get("totalCount"),
    }


def make_keys(connection, keys: list[str]) -> dict[str, str]:
    """Create sessions by key (pipelined, in chunks); key -> sessionId from the create answers."""
    ids = {}
    for start in range(0, len(keys), 250):
        answers = connection.call_many([("sessions.create", {"key": k}) for k in keys[start:start + 250]])
        errors = [outcome(a) for a in answers if isinstance(a, gateway.GatewayError)]
        if errors:
            raise RuntimeError(f"sessions.create failed: {errors[0]}")
        ids.update((a["key"], a["sessionId"]) for a in answers)
    return ids


# --------------------------------------------------------------------------------------------------------------
# parts


def part_kinds(gw) -> None:
    s = "kinds"
    with connect(gw) as c:
        record(s, "counts on a fresh gateway", counts(c))
        created = {}
        for kind, key in KIND_KEYS.items():
            answer = attempt(c, "sessions.create", owned(key))
            created[kind] = answer
            record(s, f"create {kind} ({key})", {k: answer.get(k) for k in ("error", "message", "key", "sessionId")
                                                   if k in answer})
        default = {r["key"]: r for r in rows(c)}
        listings = {
            "default": default,
            "archived all": {r["key"]: r for r in rows(c, archived="all")},
            "includeGlobal+includeUnknown": {r["key"]: r for r in rows(c, includeGlobal=True, includeUnknown=True)},
            "search cron": {r["key"]: r for r in rows(c, search="cron")},
            "agentId main": {r["key"]: r for r in rows(c, agentId="main")},
            "agentId sales": {r["key"]: r for r in rows(c, agentId="sales")},
            "excludeCron": {r["key"]: r for r in rows(c, excludeCron=True)},
            "excludeSubagents": {r["key"]: r for r in rows(c, excludeSubagents=True)},
            "excludeSystem": {r["key"]: r for r in rows(c, excludeSystem=True)},
        }
        for kind, key in KIND_KEYS.items():
            seen = [name for name, listing in listings.items() if key in listing]
            row = next((listing[key] for listing in listings.values() if key in listing), None)
            described = attempt(c, "sessions.describe", owned(key))
            resolved = attempt(c, "sessions.resolve", owned(key))
            record(s, f"{kind}", {
                "listed in": seen,
                "row": {k: row.get(k) for k in ("kind", "classification", "createdVia", "agentId", "isMain", "chatType",
                                                "channel", "spawnedBy", "parentSessionKey")} if row else None,
                "describe": ({k: (described.get("session") or described).get(k)
                              for k in ("key", "kind", "classification", "createdVia", "agentId", "sessionId")}
                             if "error" not in described else described),
                "resolve": resolved if "error" in resolved else {k: resolved.get(k) for k in ("ok", "key")},
            })
        record(s, "row fields (direct)", sorted(default.get(KIND_KEYS["direct"], {}).keys()))
        record(s, "counts after one of each kind", counts(c))
        record(s, "sessions.list {kinds}", attempt(c, "sessions.list", {"limit": 1, "kinds": ["cron"]}))
        status = attempt(c, "status", {})
        record(s, "status.sessions.recent keys", [r.get("key") for r in status.get("sessions", {}).get("recent", [])])
        hidden = KIND_KEYS["cron run"]
        for method, params in (("sessions.usage", {"agentScope": "all", "range": "all"}),
                               ("sessions.storage.status", {}), ("cron.runs", {}),
                               ("sessions.list", {"limit": 10000, "search": "job1:run"}),
                               ("sessions.list", {"limit": 10000, "spawnedBy": "agent:main:main"})):
            answer = attempt(c, method, params)
            record(s, f"{method} {json.dumps(params)} names the cron run",
                   answer if "error" in answer else hidden in json.dumps(answer))
        by_agent = attempt(c, "status", {}).get("sessions", {}).get("byAgent", [])
        record(s, "status.sessions.byAgent[].recent names the cron run",
               [(a.get("agentId"), hidden in json.dumps(a.get("recent"))) for a in by_agent])
        # reach the hidden kinds: archive, then delete
        for kind in ("cron run", "cron run (sales)", "subagent", "global", "unknown"):
            key = KIND_KEYS[kind]
            session_id = ((attempt(c, "sessions.describe", owned(key)).get("session") or {}).get("sessionId")
                          or created[kind].get("sessionId"))
            record(s, f"archive {kind}", attempt(c, "sessions.patch", owned(key, archived=True,
                                                                             expectedSessionId=session_id or "x")))
            record(s, f"listed {kind} with archived:true", key in {r["key"] for r in rows(c, archived=True,
                                                                                       includeGlobal=True,
                                                                                       includeUnknown=True)})
            record(s, f"counts after archiving {kind}", counts(c))
            record(s, f"purge {kind}", attempt(c, "sessions.delete", owned(key, archivedOnly=True,
                                                                            expectedSessionId=session_id or "x")))
            if kind == "unknown":
                record(s, "delete unknown (admin, no archivedOnly)", attempt(c, "sessions.delete", owned(key)))
            after = attempt(c, "sessions.describe", owned(key))
            record(s, f"describe {kind} after purge", after if "error" in after else {
                k: (after.get("session") or after).get(k) for k in ("key", "sessionId", "archived")})
        record(s, "counts after purging the cron runs, subagent, global, unknown", counts(c))
        record(s, "health {probe:true} counts", {"count": (attempt(c, "health", {"probe": True}).get("sessions") or {})
                                                .get("count")})


def archive_targets(keys: list[str], ids: dict[str, str]) -> list[dict]:
    return [{"key": k, "expectedSessionId": ids[k]} for k in keys]


def part_archive(gw, runs: int) -> None:
    s = "archive"
    n = 200
    with connect(gw, timeout=600) as c:
        keys = [f"agent:main:arch-{i:03d}" for i in range(n)]
        ids = make_keys(c, keys)
        listed = {r["key"]: r["sessionId"] for r in rows(c) if r["key"] in ids}
        record(s, "created (pipelined), listed right after", {
            "created": len(ids), "listed": len(listed), "same sessionId": sum(listed[k] == ids[k] for k in listed)})

        def one_at_a_time(archived: bool) -> dict:
            times = []
            failures = []
            for k in keys:
                elapsed, answer = timed(c, "sessions.patch", {"key": k, "archived": archived,
                                                              "expectedSessionId": ids[k]})
                times.append(elapsed)
                if "error" in answer:
                    failures.append(answer)
            return {**per_call(times), "failed": len(failures), "failures": failures[:2]}

        before = {r["key"]: r["updatedAt"] for r in rows(c) if r["key"] in ids}
        bulk(c, s, "archive one at a time", one_at_a_time(True))
        record(s, "default listing after archive (of the 200)", sum(r["key"] in ids for r in rows(c)))
        archived_rows = {r["key"]: r for r in rows(c, archived=True)}
        sample = archived_rows.get(keys[0], {})
        record(s, "archived row", {k: sample.get(k) for k in ("archived", "archivedAt", "updatedAt", "sessionId")})
        bulk(c, s, "restore one at a time", one_at_a_time(False))
        after = {r["key"]: r["updatedAt"] for r in rows(c) if r["key"] in ids}
        record(s, "restore bumps updatedAt", {"bumped": sum(after[k] > before[k] for k in ids), "of": len(ids),
                                              "example_delta_ms": after[keys[0]] - before[keys[0]]})
        patch_answer = attempt(c, "sessions.patch", {"key": keys[0], "archived": True,
                                                     "expectedSessionId": ids[keys[0]]})
        record(s, "sessions.patch archive answer keys", sorted(patch_answer.keys()))
        attempt(c, "sessions.patch", {"key": keys[0], "archived": False, "expectedSessionId": ids[keys[0]]})

        # pipelined single patches: all 200 in flight on one connection
        for archived in (True, False):
            start = time.perf_counter()
            answers = c.call_many([("sessions.patch", {"key": k, "archived": archived, "expectedSessionId": ids[k]})
                                   for k in keys])
            bulk(c, s, f"{'archive' if archived else 'restore'} pipelined (200 in flight)",
                   {"total_s": round(time.perf_counter() - start, 3),
                    "errors": sum(isinstance(a, gateway.GatewayError) for a in answers)})

        for size in (10, 50, 100, 200):
            for archived in (True, False):
                start = time.perf_counter()
                outcomes, errors = [], []
                for b in range(0, n, size):
                    answer = attempt(c, "sessions.patchMany", {"targets": archive_targets(keys[b:b + size], ids),
                                                               "patch": {"archived": archived}})
                    if "error" in answer:
                        errors.append(answer)
                    else:
                        outcomes.extend(answer.get("outcomes", []))
                elapsed = time.perf_counter() - start
                bulk(c, s, f"patchMany {'archive' if archived else 'restore'} batches of {size}",
                       {"total_s": round(elapsed, 3), "per_session_ms": round(elapsed / n * 1000, 2),
                        "ok": sum(o.get("ok") is True for o in outcomes), "failed": len(outcomes) - sum(
                            o.get("ok") is True for o in outcomes), "batch_errors": errors[:1]})
                if errors:
                    break
        # per-target outcomes: wrong sessionId, missing key, main session, one good one
        attempt(c, "sessions.create", {"key": "agent:main:main"})
        main_id = next(r["sessionId"] for r in rows(c) if r["key"] == "agent:main:main")
        record(s, "patchMany mixed targets", attempt(c, "sessions.patchMany", {"targets": [
            {"key": keys[0], "expectedSessionId": ids[keys[0]]},
            {"key": keys[1], "expectedSessionId": "not-the-session-id"},
            {"key": "agent:main:does-not-exist", "expectedSessionId": "x"},
            {"key": "agent:main:main", "expectedSessionId": main_id},
            {"key": keys[2]},
        ], "patch": {"archived": True}}))
        record(s, "patch wrong expectedSessionId", attempt(c, "sessions.patch", {
            "key": keys[3], "archived": True, "expectedSessionId": "not-the-session-id"}))
        record(s, "patch without expectedSessionId", attempt(c, "sessions.patch", {"key": keys[3], "archived": True}))
        record(s, "patch with expectedSessionUpdatedAt", attempt(c, "sessions.patch", {
            "key": keys[3], "archived": True, "expectedSessionId": ids[keys[3]], "expectedSessionUpdatedAt": 1}))
        record(s, "archive main session", attempt(c, "sessions.patch", {"key": "agent:main:main", "archived": True,
                                                                         "expectedSessionId": main_id}))
        record(s, "purge a session that is not archived", attempt(c, "sessions.delete", {
            "key": keys[3], "archivedOnly": True, "expectedSessionId": ids[keys[3]]}))
        restore_all = attempt(c, "sessions.patchMany", {"targets": archive_targets(keys[:3], ids),
                                                       "patch": {"archived": False}})
        record(s, "restore the mixed batch", restore_all)

        # describe: cost, shape
        described = attempt(c, "sessions.describe", {"key": keys[5]})
        record(s, "sessions.describe answer", {"keys": sorted(described.keys()),
                                               "session keys": sorted((described.get("session") or {}).keys())[:60]})
        record(s, "sessions.describe one", median_of(c, "sessions.describe", {"key": keys[5]}, runs))
        record(s, "sessions.describe missing key", attempt(c, "sessions.describe", {"key": "agent:main:nope"}))
        start = time.perf_counter()
        c.call_many([("sessions.describe", {"key": k}) for k in keys])
        record(s, "sessions.describe 200 pipelined", {"total_s": round(time.perf_counter() - start, 3)})
        start = time.perf_counter()
        rows(c)
        record(s, "sessions.list one page (re-read alternative)", {"total_s": round(time.perf_counter() - start, 3)})

        # purge: archive all 200 in batches of 100, then delete archivedOnly
        for b in range(0, n, 100):
            attempt(c, "sessions.patchMany", {"targets": archive_targets(keys[b:b + 100], ids),
                                             "patch": {"archived": True}})
        half = n // 2
        times, failures, sample = [], [], None
        for k in keys[:half]:
            elapsed, answer = timed(c, "sessions.delete", {"key": k, "archivedOnly": True, "expectedSessionId": ids[k]})
            times.append(elapsed)
            sample = sample or answer
            failures += [answer] if "error" in answer or not answer.get("deleted") else []
        bulk(c, s, f"purge one at a time ({half}, transcript kept as archive)", {**per_call(times),
                                                                             "failures": failures[:2],
                                                                             "answer": sample})
        times, failures = [], []
        for k in keys[half:]:
            elapsed, answer = timed(c, "sessions.delete", {"key": k, "archivedOnly": True, "expectedSessionId": ids[k],
                                                           "deleteTranscript": False})
            times.append(elapsed)
            failures += [answer] if "error" in answer or not answer.get("deleted") else []
        bulk(c, s, f"purge one at a time ({n - half}, deleteTranscript:false)", {**per_call(times),
                                                                             "failures": failures[:2]})
        record(s, "archived left after purge", sum(r["key"] in ids for r in rows(c, archived="all")))
        # purge pipelined: 200 more
        keys2 = [f"agent:main:purge-{i:03d}" for i in range(n)]
        ids2 = make_keys(c, keys2)
        for b in range(0, n, 100):
            attempt(c, "sessions.patchMany", {"targets": archive_targets(keys2[b:b + 100], ids2),
                                             "patch": {"archived": True}})
        # measured: 200 pipelined purges that archive their transcripts got no answers within 120 s, so 50 of those
        for label, chosen, extra in (("50 pipelined (transcript kept as archive)", keys2[:50], {}),
                                     ("150 pipelined (deleteTranscript:false)", keys2[50:],
                                      {"deleteTranscript": False})):
            start = time.perf_counter()
            answers = c.call_many([("sessions.delete", {"key": k, "archivedOnly": True, "expectedSessionId": ids2[k],
                                                        **extra}) for k in chosen])
            elapsed = time.perf_counter() - start
            bulk(c, s, f"purge {label}", {"total_s": round(elapsed, 3),
                                         "per_session_ms": round(elapsed / len(chosen) * 1000),
                                         "errors": sum(isinstance(a, gateway.GatewayError) for a in answers)})
        # delete as cleanup sends it today, for comparison
        keys3 = [f"agent:main:del-{i:03d}" for i in range(50)]
        make_keys(c, keys3)
        live = {r["key"]: r for r in rows(c) if r["key"] in set(keys3)}
        times = [timed(c, "sessions.delete", {"key": k, "expectedSessionId": live[k]["sessionId"],
                                              "expectedSessionUpdatedAt": live[k]["updatedAt"]})[0] for k in keys3]
        record(s, "delete one at a time as cleanup does today (50)", per_call(times))


def part_active(gw, model) -> None:
    s = "active"
    keys = [f"agent:main:held-{n}-{uuid.uuid4().hex[:6]}" for n in (1, 2)]
    with connect(gw) as c:
        model.hold.clear()
        try:
            before = len(model.chat_requests())
            for key in keys:
                record(s, "chat.send", attempt(c, "chat.send", {"sessionKey": key, "message": "hello",
                                                                "idempotencyKey": str(uuid.uuid4())}))
            deadline = time.monotonic() + 120
            held = {}
            while time.monotonic() < deadline:
                held = {r["key"]: r for r in rows(c) if r["key"] in keys and r.get("hasActiveRun")}
                if len(held) == 2 and len(model.chat_requests()) >= before + 2:
                    break
                time.sleep(0.5)
            for key in keys:
                record(s, "row while held", {k: held.get(key, {}).get(k) for k in (
                    "key", "hasActiveRun", "status", "activeRunIds", "updatedAt", "sessionId")})
            first, second = (held.get(k, {}) for k in keys)
            described = (attempt(c, "sessions.describe", {"key": keys[0]}).get("session") or {})
            record(s, "sessions.describe of an active session", {k: described.get(k, "(absent)") for k in (
                "hasActiveRun", "status", "activeRunIds", "updatedAt", "sessionId")})
            elapsed, answer = timed(c, "sessions.patch", {"key": keys[0], "archived": True,
                                                          "expectedSessionId": first.get("sessionId", "x")})
            record(s, "sessions.patch archive on an active session", {"elapsed_s": round(elapsed, 3), "answer": answer})
            elapsed, answer = timed(c, "sessions.patchMany", {
                "targets": [{"key": keys[1], "expectedSessionId": second.get("sessionId", "x")}],
                "patch": {"archived": True}})
            record(s, "sessions.patchMany archive on an active session", {"elapsed_s": round(elapsed, 3),
                                                                           "answer": answer})
            after = {r["key"]: r for r in rows(c, archived="all") if r["key"] in keys}
            for key in keys:
                record(s, "row after the archive", {k: after.get(key, {}).get(k) for k in (
                    "key", "archived", "hasActiveRun", "status", "updatedAt", "endedAt")})
        finally:
            model.hold.set()


def part_old(gw) -> None:
    s = "old (2026.4.29)"
    with connect(gw) as c:
        record(s, "hello", {"protocol": c.hello.protocol, "server": c.hello.server_version})
        record(s, "sessions.create", attempt(c, "sessions.create", {"key": "agent:main:old-1"}))
        attempt(c, "sessions.create", {"key": "agent:main:cron:job1:run:abc"})
        listed = rows(c)
        record(s, "cron run listed", any(r["key"] == "agent:main:cron:job1:run:abc" for r in listed))
        record(s, "rows", [(r["key"], r.get("kind")) for r in listed])
        row = next(r for r in listed if r["key"] == "agent:main:old-1")
        record(s, "row fields", sorted(row.keys()))
        sid = row.get("sessionId")
        record(s, "patch archived with expectedSessionId", attempt(c, "sessions.patch", {
            "key": "agent:main:old-1", "archived": True, "expectedSessionId": sid}))
        record(s, "patch archived", attempt(c, "sessions.patch", {"key": "agent:main:old-1", "archived": True}))
        record(s, "list archived:all", attempt(c, "sessions.list", {"archived": "all"}))
        record(s, "list includeGlobal", attempt(c, "sessions.list", {"includeGlobal": True}).get("error") or "accepted")
        record(s, "delete archivedOnly", attempt(c, "sessions.delete", {"key": "agent:main:old-1",
                                                                         "archivedOnly": True}))
        record(s, "patchMany", attempt(c, "sessions.patchMany", {"targets": [{"key": "agent:main:old-1"}],
                                                                 "patch": {"archived": True}}))
        record(s, "describe", attempt(c, "sessions.describe", {"key": "agent:main:old-1"}))
        status = attempt(c, "status", {})
        sessions = status.get("sessions", {})
        record(s, "status.sessions keys", sorted(sessions.keys()))
        record(s, "status.sessions.byAgent", [(a.get("agentId"), a.get("count")) for a in sessions.get("byAgent", [])])
        record(s, "counts", {"status.count": sessions.get("count"),
                             "health.count": (attempt(c, "health", {}).get("sessions") or {}).get("count"),
                             "list rows": len(listed)})
        record(s, "sessions.create other agent (none configured)",
               attempt(c, "sessions.create", {"key": "agent:sales:old-1"}))
        record(s, "status.sessions.byAgent after", [(a.get("agentId"), a.get("count"))
                                                    for a in attempt(c, "status", {})["sessions"].get("byAgent", [])])
        record(s, "delete cron run", attempt(c, "sessions.delete", {"key": "agent:main:cron:job1:run:abc"}))
        record(s, "status.count after deleting the cron run", attempt(c, "status", {})["sessions"].get("count"))


def part_scale(gw, sizes: list[int], runs: int) -> None:
    s = "scale"
    with connect(gw, timeout=600) as c:
        for size in sizes:
            have = attempt(c, "sessions.list", {"limit": 1}).get("totalCount") or 0
            keys = [f"agent:{('main', 'sales', 'support')[i % 3]}:scale-{i:05d}" for i in range(have, size)]
            start = time.perf_counter()
            for b in range(0, len(keys), 250):
                c.call_many([("sessions.create", {"key": k}) for k in keys[b:b + 250]])
            record(s, f"create {len(keys)} to reach {size}", {"total_s": round(time.perf_counter() - start, 1)})
            record(s, f"{size}: counts", counts(c))
            for name, method, params in (("status", "status", {}), ("health", "health", {}),
                                         ("sessions.list limit 1", "sessions.list", {"limit": 1}),
                                         ("sessions.list limit 1000", "sessions.list", {"limit": 1000}),
                                         ("sessions.list limit 1000 agentId sales", "sessions.list",
                                          {"limit": 1000, "agentId": "sales"}),
                                         ("health probe", "health", {"probe": True}),
                                         ("sessions.usage all agents (lists cron runs too)", "sessions.usage",
                                          {"agentScope": "all", "range": "all"})):
                record(s, f"{size}: {name}", median_of(c, method, params, runs))
            page = attempt(c, "sessions.list", {"limit": 1000})
            record(s, f"{size}: one page of 1000", {"rows": len(page.get("sessions", [])),
                                                     "bytes": len(json.dumps(page))})


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--parts", default="kinds,archive,active,old,scale")
    parser.add_argument("--scale", default="1000,5000")
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    parts = set(args.parts.split(","))
    model = fake_model.FakeModel().start()
    new_config = peer.deep_merge(model.provider_config(), {"agents": {"entries": AGENTS}})
    specs = [{"name": "m-new", "extra_config": new_config}]
    if "old" in parts:
        specs.append({"name": "m-old", "version": "2026.4.29"})
    gateways = []
    try:
        t0 = time.monotonic()
        gateways = peer.start_many(specs)
        record("setup", "gateways ready", {"seconds": round(time.monotonic() - t0, 1),
                                           "versions": [gw.version for gw in gateways]})
        new = gateways[0]
        for part, run in (("kinds", lambda: part_kinds(new)), ("archive", lambda: part_archive(new, args.runs)),
                          ("active", lambda: part_active(new, model)), ("old", lambda: part_old(gateways[1])),
                          ("scale", lambda: part_scale(new, [int(x) for x in args.scale.split(",")], args.runs))):
            if part in parts:
                try:
                    run()
                except Exception as exc:  # a failed part is reported and the next one still runs
                    record(part, "FAILED", f"{type(exc).__name__}: {exc}")
    finally:
        model.hold.set()
        peer.stop_many(gateways)
        model.stop()
        RESULTS["overloads"] = OVERLOADS
        if args.json:
            args.json.write_text(json.dumps(RESULTS, indent=1, default=str) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
