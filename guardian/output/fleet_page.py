"""`guardian serve`'s live page: the last check's numbers as a fleet grid, hottest first, reloading itself.

One small tile per host and pool (level, usage, sessions of the limit, the forecast when rising), so
50 hosts fit one 1920x1080 screen; a handful of hosts get larger tiles. Self-contained like the
report's page: inline CSS, nothing fetched, every text from a gateway or the config escaped.
"""

from __future__ import annotations

from html import escape

from guardian.core.records import CheckReport, Subject
from guardian.output.dashboard import COLOURS
from guardian.output.text import forecast_text, subject_label
from guardian.settings.levels import RANK
from guardian.settings.units import duration_text

LARGE_UP_TO = 8  # subjects: up to this many get large tiles

CSS = """
*{box-sizing:border-box}
body{margin:0;padding:16px 24px;background:#0d1117;color:#e6edf3;
font:14px/1.3 system-ui,-apple-system,"Segoe UI",sans-serif}
header{display:flex;justify-content:space-between;align-items:baseline;flex-wrap:wrap;gap:8px;margin-bottom:12px}
h1{margin:0;font-size:22px;font-weight:600}
.summary span{margin-left:14px;color:#8b949e}
.summary b{color:var(--level)}
.stale{color:#f85149;font-weight:700}
.grid{display:grid;grid-template-columns:repeat(auto-fill,minmax(214px,1fr));gap:8px}
.grid.large{grid-template-columns:repeat(auto-fill,minmax(420px,1fr));gap:16px}
.tile{background:#161b22;border:1px solid #30363d;border-left:6px solid var(--level);border-radius:6px;padding:6px 10px;
height:118px;overflow:hidden}
.large .tile{height:200px;padding:14px 18px}
.tile .name{font-size:15px;font-weight:600;white-space:nowrap;overflow:hidden;text-overflow:ellipsis}
.large .tile .name{font-size:22px}
.tile .usage{font-size:30px;font-weight:700;color:var(--level);line-height:1.1}
.large .tile .usage{font-size:56px}
.tile .usage small{font-size:13px;color:#8b949e;font-weight:400;margin-left:6px}
.large .tile .usage small{font-size:18px}
.bar{height:6px;background:#30363d;border-radius:3px;margin:4px 0}
.bar i{display:block;height:100%;border-radius:3px;background:var(--level)}
.note{color:#8b949e;font-size:12px;white-space:nowrap;overflow:hidden;text-overflow:ellipsis}
.large .note{font-size:15px}
"""


def order(subjects: list[Subject]) -> list[Subject]:
    """Hottest first: the highest level, then the unreachable, then the highest usage; by name on ties."""
    return sorted(subjects, key=lambda s: (-RANK[s.level], s.reading is not None,
                                           -(s.reading.usage if s.reading else 0.0), s.kind, s.name))


def page(report: CheckReport | None, now: float, check_every: float, healthy: bool) -> str:
    """The whole document; it reloads itself every check interval."""
    subjects = order(report.subjects) if report else []
    tiles = "\n".join(_tile(s) for s in subjects) or '<p class="note">No check has run yet.</p>'
    size = " large" if len(subjects) <= LARGE_UP_TO else ""
    hottest = subjects[0] if subjects else None
    title = f"{escape(subject_label(hottest))} {hottest.reading.usage:.0f}%" if hottest and hottest.reading else "fleet"
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width,initial-scale=1">
<meta http-equiv="refresh" content="{max(5, round(check_every))}">
<title>Sessions: {title}</title>
<style>{CSS}</style></head>
<body>
<header><h1>Session Limit Guardian</h1>{_summary(report, subjects, now, check_every, healthy)}</header>
<section class="grid{size}">
{tiles}
</section>
</body></html>
"""


def _summary(report: CheckReport | None, subjects: list[Subject], now: float, check_every: float, healthy: bool) -> str:
    counts = {level: sum(1 for s in subjects if s.level == level and s.reading) for level in reversed(RANK)}
    unreachable = sum(1 for s in subjects if s.reading is None)
    parts = [f'<span style="--level:{COLOURS[level]}"><b>{n}</b> {level}</span>' for level, n in counts.items() if n]
    if unreachable:
        parts.append(f'<span style="--level:{COLOURS["unreachable"]}"><b>{unreachable}</b> unreachable</span>')
    age = f"checked {duration_text(max(0.0, now - report.time))} ago" if report else "waiting for the first check"
    freshness = f'<span>{age}, every {duration_text(check_every)}</span>'
    if not healthy:
        freshness = f'<span class="stale">{age}: checks are late</span>'
    return f'<div class="summary">{"".join(parts)}{freshness}</div>'


def _tile(subject: Subject) -> str:
    r = subject.reading
    level = subject.level if r else "unreachable"
    if r:
        lower = "≥" if subject.unreachable_members else ""
        usage = f'{lower}{r.usage:.0f}%<small>{r.count}/{r.limit} · {level}</small>'
        idle = f"{r.idle} idle" if r.idle is not None else ""
        note = escape(" · ".join(text for text in (idle, forecast_text(subject.forecast)) if text)) or "&nbsp;"
    else:
        usage = f'?<small>of {subject.limit} · unreachable</small>'
        note = escape(subject.error or "no reading")
    width = min(100.0, r.usage) if r else 0.0
    name = escape(subject_label(subject))
    return (f'<div class="tile" style="--level:{COLOURS[level]}"><div class="name">{name}</div>'
            f'<div class="usage">{usage}</div><div class="bar"><i style="width:{width:.0f}%"></i></div>'
            f'<div class="note">{note}</div></div>')
