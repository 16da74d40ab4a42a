"""`guardian report --format html`: one self-contained page for a wall screen.

Inline CSS and inline SVG only: nothing is fetched when the page is viewed, so it works from a
file, offline, behind any proxy. Every text that came from a gateway, the config or the audit log
goes through html.escape. One card per host (then per pool): usage now and its forecast, a host's
sessions now stacked by agent against its limit, a chart of usage against the thresholds and the
limit with alert and cleanup markers, and the dashed forecast line, the next expected daily peak
marked on it; the usual peak in words and a weekday x hour heatmap of usage (in history.tz); then
the cleanups of the period (few, and what was done) and its alerts.
"""

from __future__ import annotations

from datetime import datetime, timezone
from html import escape

from guardian.core.attribution import OTHER
from guardian.output.quiet import QUIET_COLUMNS, quiet_row
from guardian.output.text import (
    UNDO,
    forecast_text,
    other_outcomes,
    peak_text,
    percent,
    report_headline,
    subject_label,
    undo_text,
)
from guardian.settings.units import duration_text, iso_time

COLOURS = {"ok": "#3fb950", "notice": "#39c5cf", "warning": "#d29922", "critical": "#f85149", "unknown": "#bc8cff",
           "unreachable": "#bc8cff", "limit": "#e6edf3"}
WIDTH, HEIGHT = 640, 230
LEFT, RIGHT, TOP, BOTTOM = 44, 92, 18, 30  # margins: axis labels left and below, threshold labels right
AHEAD = 0.15  # the chart runs this share of the period past now, for the forecast line
PEAK_AHEAD = 86400.0  # the chart runs on to the next expected daily peak when it is this close
REFRESH_SECONDS = 300
TABLE_ROWS = 100  # alerts listed on the page, latest first

CSS = """
*{box-sizing:border-box}
body{margin:0;padding:24px 32px;background:#0d1117;color:#e6edf3;
     font:15px/1.4 system-ui,-apple-system,"Segoe UI",sans-serif}
header{display:flex;justify-content:space-between;align-items:baseline;flex-wrap:wrap;gap:8px}
h1{margin:0;font-size:24px;font-weight:600}
h2{font-size:18px;margin:28px 0 8px}
.period{color:#8b949e}
.headline{margin:16px 0 20px;padding:14px 18px;border-radius:8px;background:#161b22;border-left:6px solid var(--level);
          font-size:19px}
.cards{display:grid;grid-template-columns:repeat(auto-fill,minmax(600px,1fr));gap:18px}
.card{background:#161b22;border:1px solid #30363d;border-radius:10px;padding:14px 16px 8px;
      border-top:5px solid var(--level)}
.card header{align-items:center}
.name{font-size:21px;font-weight:600}
.badge{display:inline-block;margin-left:10px;padding:1px 9px;border-radius:10px;background:var(--level);color:#0d1117;
       font-size:13px;font-weight:700;text-transform:uppercase;vertical-align:middle}
.now{font-size:34px;font-weight:700;color:var(--level);line-height:1}
.now small{font-size:15px;color:#8b949e;font-weight:400}
.outlook{margin:6px 0 2px;font-size:16px}
.stats{display:flex;flex-wrap:wrap;gap:4px 18px;color:#8b949e;font-size:13px}
.stats b{color:#e6edf3;font-weight:600}
svg.chart{width:100%;height:auto;display:block;margin-top:6px}
svg text{fill:#8b949e;font-size:11px;font-family:inherit}
table{border-collapse:collapse;width:100%;background:#161b22;border-radius:8px;overflow:hidden}
th,td{padding:6px 10px;text-align:left;border-bottom:1px solid #21262d;font-size:14px}
th{color:#8b949e;font-weight:600;background:#1c2129}
td.level{font-weight:700;color:var(--level)}
td.time{white-space:nowrap;color:#8b949e}
.none{color:#8b949e}
.peak{margin:2px 0 4px;font-size:14px;color:#8b949e}
svg.heatmap{width:100%;height:auto;display:block;margin:4px 0 6px}
.agents{display:flex;height:14px;margin:8px 0 4px;border-radius:4px;overflow:hidden;background:#0d1117}
.agents span{min-width:2px}
.legend{display:flex;flex-wrap:wrap;gap:2px 14px;color:#8b949e;font-size:13px}
.legend i{display:inline-block;width:10px;height:10px;margin-right:5px;border-radius:2px;background:var(--agent)}
.legend b{color:#e6edf3;font-weight:600}
"""


def page(report) -> str:
    """The whole HTML document."""
    hottest = report.hottest
    level = hottest.latest.level if hottest else "ok"
    cards = "\n".join(_card(s, report) for s in report.subjects)
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width,initial-scale=1">
<meta http-equiv="refresh" content="{REFRESH_SECONDS}">
<title>Sessions: {escape(hottest.name) + " " + percent(hottest.latest.usage) if hottest else "no history"}</title>
<style>{CSS}</style></head>
<body>
<header><h1>Session Limit Guardian</h1>
<span class="period">{_when(report.since)} → {_when(report.now)} ({duration_text(report.now - report.since)})</span>
</header>
<p class="headline" style="--level:{COLOURS[level]}">{escape(report_headline(report))}</p>
<section class="cards">
{cards}
</section>
<h2>Cleanups</h2>
{_cleanups_table(report)}
<h2>Alerts</h2>
{_alerts_table(report)}
<h2>Silences, acknowledgements and maintenance windows</h2>
{_quiet_table(report)}
</body></html>
"""


def _card(subject, report) -> str:
    latest, usage = subject.latest, subject.usage
    level = latest.level if latest else "unknown"
    now = (f'{percent(latest.usage)} <small>{latest.sessions}/{latest.limit} sessions</small>' if latest
           else '<small>no readings in the period</small>')
    outlook = forecast_text(subject.forecast) or "not enough recent history for a forecast"
    spent = ", ".join(f"{name} {duration_text(seconds)}" for name, seconds in subject.time_at_level.items() if seconds)
    sent = ", ".join(f"{n} {level}" for level, n in subject.alerts_sent.items() if n) or "none"
    undo = "".join(f"<span>{result} <b>{subject.outcomes(result)}</b></span>" for result in UNDO)
    return f"""<article class="card" style="--level:{COLOURS[level]}">
<header><span class="name">{escape(subject_label(subject))}<span class="badge">{escape(level)}</span></span>
<span class="now">{now}</span></header>
<div class="outlook">{escape(outlook)}</div>
<div class="peak">{escape(peak_text(subject.peak, report.now))}</div>
<div class="stats"><span>min <b>{percent(usage['min'])}</b></span><span>mean <b>{percent(usage['mean'], 1)}</b></span>
<span>max <b>{percent(usage['max'])}</b></span><span>alerts sent <b>{escape(sent)}</b></span>
<span>closed <b>{subject.sessions_closed}</b></span>{undo}<span>{escape(spent)}</span></div>
{_agents_bar(subject)}
{_chart(subject, report)}
{_heatmap(subject)}
</article>"""


def _chart(subject, report) -> str:
    start, end = report.since, report.now + (report.now - report.since) * AHEAD
    next_peak = subject.peak.next_at and subject.peak.next_at.timestamp()
    if next_peak and next_peak - report.now <= PEAK_AHEAD:  # far enough to show the next daily peak
        end = max(end, next_peak + (next_peak - start) * 0.05)
    readings = [u for _, u in subject.series if u is not None]
    top = max(100.0, *readings) if readings else 100.0
    top = 10 * -(-top // 10)  # round up to a multiple of 10

    def x(when: float) -> float:
        return LEFT + (when - start) / (end - start) * (WIDTH - LEFT - RIGHT)

    def y(usage: float) -> float:
        return TOP + (1 - min(usage, top) / top) * (HEIGHT - TOP - BOTTOM)

    bottom, right = HEIGHT - BOTTOM, WIDTH - RIGHT
    parts = [f'<rect x="{LEFT}" y="{TOP}" width="{right - LEFT}" height="{bottom - TOP}" fill="#0d1117"/>']
    bands = [("notice", "warning"), ("warning", "critical"), ("critical", None)]
    for low, high in bands:  # shaded zones between thresholds
        upper = report.thresholds[high] if high else 100.0
        parts.append(f'<rect class="zone" x="{LEFT}" y="{y(upper):.1f}" width="{right - LEFT}" '
                     f'height="{y(report.thresholds[low]) - y(upper):.1f}" fill="{COLOURS[low]}" fill-opacity="0.08"/>')
    for fraction in (0, 0.25, 0.5, 0.75, 1):  # y axis
        value = top * fraction
        parts.append(f'<text x="{LEFT - 6}" y="{y(value) + 4:.1f}" text-anchor="end">{value:.0f}%</text>')
    for tick in _time_ticks(report.since, report.now):
        parts.append(f'<line x1="{x(tick):.1f}" y1="{TOP}" x2="{x(tick):.1f}" y2="{bottom}" stroke="#21262d"/>'
                     f'<text x="{x(tick):.1f}" y="{bottom + 16}" text-anchor="middle">{_clock(tick, report)}</text>')
    for name, value in [*((level, report.thresholds[level]) for level in ("notice", "warning", "critical")),
                        ("limit", 100.0)]:
        dash = "" if name == "limit" else ' stroke-dasharray="6 4"'
        parts.append(
            f'<line class="threshold" data-level="{name}" x1="{LEFT}" y1="{y(value):.1f}" x2="{right}" '
            f'y2="{y(value):.1f}" stroke="{COLOURS[name]}" stroke-width="1.2"{dash}/>'
            f'<text x="{right + 6}" y="{y(value) + 4:.1f}" style="fill:{COLOURS[name]}">{name} {value:.0f}%</text>'
        )
    now_x = x(report.now)
    parts.append(f'<line x1="{now_x:.1f}" y1="{TOP}" x2="{now_x:.1f}" y2="{bottom}" stroke="#8b949e" '
                 f'stroke-dasharray="2 3"/><text x="{now_x:.1f}" y="{TOP - 5}" text-anchor="middle">now</text>')
    parts += _usage_path(subject.series, x, y, bottom)
    parts += _forecast_line(subject, report.now, end, x, y)
    parts += _next_peak(subject, end, x, y)
    for run in subject.cleanups:
        parts.append(_run_marker(run, x(run.time), bottom))
    for alert in subject.alerts:
        if not alert.channels:
            continue
        ax, colour = (
            x(alert.time),
            COLOURS.get(alert.level if alert.reason != "unreachable" else "unreachable", "#8b949e"),
        )
        label = f"{iso_time(alert.time)}: {alert.level} {alert.reason}" + (
            f" at {alert.usage:.0f}%" if alert.usage else ""
        )
        parts.append(
            f'<g class="alert-marker"><title>{escape(label)}</title>'
            f'<path d="M{ax - 6:.1f},{TOP + 1} L{ax + 6:.1f},{TOP + 1} L{ax:.1f},{TOP + 11} Z" fill="{colour}" '
            f'stroke="#0d1117"/></g>'
        )
    label = escape(subject_label(subject))
    return (f'<svg class="chart" data-subject="{escape(subject.id)}" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" '
            f'aria-label="usage of {label} over the period">{"".join(parts)}</svg>')


def _run_marker(run, cx: float, bottom: float) -> str:
    """A dotted line where a run acted: a cleanup's marked with how many it closed (a triangle pointing down), a
    restore's with how many it brought back (pointing up, in the ok colour)."""
    restore = run.command == "restore"
    kind, colour = ("restore", COLOURS["ok"]) if restore else ("cleanup", "#58a6ff")
    tip, base = (bottom - 11, bottom - 1) if restore else (bottom - 1, bottom - 11)
    label = f"+{run.results.get('restored', 0)}" if restore else f"−{run.closed}"
    title = (f"{iso_time(run.time)}: restore restored {run.results.get('restored', 0)}" if restore
             else f"{iso_time(run.time)}: cleanup ({run.command}) closed {run.closed}{undo_text([run])}")
    others = other_outcomes(run)
    return (f'<g class="{kind}-marker"><title>{escape(title + (f"; {others}" if others else ""))}</title>'
            f'<line x1="{cx:.1f}" y1="{TOP}" x2="{cx:.1f}" y2="{bottom}" stroke="{colour}" stroke-width="1.5" '
            f'stroke-dasharray="1 3"/><path d="M{cx - 6:.1f},{base} L{cx + 6:.1f},{base} L{cx:.1f},{tip} Z" '
            f'fill="{colour}"/><text x="{cx + 8:.1f}" y="{bottom - 3}" style="fill:{colour}">{label}</text></g>')


def _usage_path(series, x, y, bottom) -> list[str]:
    """The usage line, broken where a check could not read the host, over a soft area."""
    runs, current = [], []
    for when, usage in series:
        if usage is None:
            if current:
                runs.append(current)
            current = []
        else:
            current.append((x(when), y(usage)))
    if current:
        runs.append(current)
    parts = []
    for points in runs:
        line = " ".join(f"{px:.1f},{py:.1f}" for px, py in points)
        area = f"M{points[0][0]:.1f},{bottom} L{line.replace(' ', ' L')} L{points[-1][0]:.1f},{bottom} Z"
        parts.append(f'<path d="{area}" fill="#58a6ff" fill-opacity="0.12"/>'
                     f'<polyline class="usage" points="{line}" fill="none" stroke="#58a6ff" stroke-width="2" '
                     f'stroke-linejoin="round"/>')
    return parts


def _forecast_line(subject, now: float, end: float, x, y) -> list[str]:
    """The trend, dashed, from the latest reading to the chart's right edge (rising trends only)."""
    fit, latest = subject.forecast, subject.latest
    if not fit.rising or latest is None:
        return []
    until = min(end, now + fit.full_in) if fit.full_in else end
    rise = fit.slope * (until - latest.time)
    return [f'<line class="forecast" x1="{x(latest.time):.1f}" y1="{y(latest.usage):.1f}" x2="{x(until):.1f}" '
            f'y2="{y(latest.usage + rise):.1f}" stroke="{COLOURS["critical"]}" stroke-width="2" stroke-dasharray="5 4">'
            f'<title>{escape(forecast_text(fit))}</title></line>']


def _next_peak(subject, end: float, x, y) -> list[str]:
    """A diamond where the next daily peak is expected, when it falls within the chart."""
    peak = subject.peak
    if peak.next_at is None or peak.next_at.timestamp() > end:
        return []
    px, py = x(peak.next_at.timestamp()), y(peak.next_expected_usage)
    label = f"next peak {peak.next_at:%a %H:%M}, expected {percent(peak.next_expected_usage)}"
    return [f'<g class="next-peak"><title>{escape(label)}</title>'
            f'<path d="M{px:.1f},{py - 7:.1f} L{px + 7:.1f},{py:.1f} L{px:.1f},{py + 7:.1f} L{px - 7:.1f},{py:.1f} Z" '
            f'fill="none" stroke="{COLOURS["warning"]}" stroke-width="2"/></g>']


AGENT_COLOURS = ("#58a6ff", "#3fb950", "#d29922", "#bc8cff", "#39c5cf", "#f778ba", "#ffa657")
OTHER_COLOUR = "#6e7681"


def _agents_bar(subject) -> str:
    """A host's sessions now stacked by agent (the top N, then `other`) against its limit, and a legend with each
    agent's most, growth and sessions closed over the period; empty when no agent was seen."""
    if not subject.agents:
        return ""
    segments, legend = [], []
    for index, a in enumerate(subject.agents):
        colour = OTHER_COLOUR if a.agent == OTHER else AGENT_COLOURS[index % len(AGENT_COLOURS)]
        words = f"{a.agent}: {a.now} now, at most {a.max}, {a.growth:+d} over the period, {a.closed} closed by cleanup"
        if a.now:
            segments.append(f'<span class="agent" style="flex:0 0 {a.now / max(subject.limit, 1) * 100:.2f}%;'
                            f'background:{colour}" title="{escape(words)}"></span>')
        legend.append(f'<span style="--agent:{colour}" title="{escape(words)}"><i></i>{escape(a.agent)} '
                      f'<b>{a.now}</b> (max {a.max}, {a.growth:+d}, {a.closed} closed)</span>')
    return (f'<div class="agents" data-subject="{escape(subject.id)}" role="img" aria-label="sessions now by agent">'
            f'{"".join(segments)}</div>\n<div class="legend">{"".join(legend)}</div>')


HEAT_CELL, HEAT_LEFT, HEAT_TOP = 22, 40, 14
WEEKDAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")


def _heatmap(subject) -> str:
    """Usage by weekday (rows) and hour (columns), the median over the weeks; empty without a peak forecast."""
    rows = subject.peak.heatmap
    if not subject.peak.enough or not rows:
        return ""
    parts = [f'<text x="{HEAT_LEFT + hour * HEAT_CELL + HEAT_CELL / 2}" y="{HEAT_TOP - 3}" '
             f'text-anchor="middle">{hour:02}</text>' for hour in range(0, 24, 3)]
    for day, row in enumerate(rows):
        cy = HEAT_TOP + day * HEAT_CELL
        parts.append(f'<text x="{HEAT_LEFT - 6}" y="{cy + HEAT_CELL * 0.65:.1f}" '
                     f'text-anchor="end">{WEEKDAYS[day]}</text>')
        for hour, usage in enumerate(row):
            fill = "#21262d" if usage is None else _heat_colour(usage)
            title = f"{WEEKDAYS[day]} {hour:02}:00: " + ("no data" if usage is None else percent(usage))
            parts.append(f'<rect class="heat" x="{HEAT_LEFT + hour * HEAT_CELL}" y="{cy}" width="{HEAT_CELL - 2}" '
                         f'height="{HEAT_CELL - 2}" fill="{fill}"><title>{escape(title)}</title></rect>')
    width, height = HEAT_LEFT + 24 * HEAT_CELL + 4, HEAT_TOP + 7 * HEAT_CELL
    return (f'<svg class="heatmap" data-subject="{escape(subject.id)}" viewBox="0 0 {width} {height}" role="img" '
            f'aria-label="usage of {escape(subject_label(subject))} by weekday and hour">{"".join(parts)}</svg>')


def _heat_colour(usage: float) -> str:
    """From the page's blue (idle) to critical red (full), through the warning amber."""
    share = max(0.0, min(usage, 100.0)) / 100
    stops = [(0.0, (0x16, 0x3a, 0x5f)), (0.6, (0xd2, 0x99, 0x22)), (1.0, (0xf8, 0x51, 0x49))]
    for (a, low), (b, high) in zip(stops, stops[1:]):
        if share <= b:
            mix = (share - a) / (b - a)
            return "#" + "".join(f"{round(lo + (hi - lo) * mix):02x}" for lo, hi in zip(low, high))
    return "#f85149"


def _time_ticks(since: float, until: float) -> list[float]:
    """About six ticks on round times (5 min .. 1 day apart)."""
    steps = [300, 600, 900, 1800, 3600, 7200, 10800, 21600, 43200, 86400, 172800, 604800]
    step = next((s for s in steps if (until - since) / s <= 7), steps[-1])
    first = -(-since // step) * step
    return [first + i * step for i in range(int((until - first) // step) + 1)]


def _clock(when: float, report) -> str:
    moment = datetime.fromtimestamp(when, timezone.utc)
    return moment.strftime("%d %b %H:%M" if report.now - report.since > 86400 else "%H:%M")


def _when(when: float) -> str:
    return datetime.fromtimestamp(when, timezone.utc).strftime("%Y-%m-%d %H:%M UTC")


def _alerts_table(report) -> str:
    if not report.alerts:
        return '<p class="none">No alerts in the period.</p>'
    rows = []
    for a in report.alerts[: -TABLE_ROWS - 1: -1]:  # latest first
        colour = COLOURS.get("unreachable" if a.reason == "unreachable" else a.level, "#8b949e")
        channels = ", ".join(a.channels) + (f" (failed: {', '.join(a.failed)})" if a.failed else "")
        rows.append(f'<tr><td class="time">{_when(a.time)}</td><td>{escape(a.subject)}</td>'
                    f'<td class="level" style="--level:{colour}">{escape(a.level)}</td><td>{escape(a.reason)}</td>'
                    f'<td>{percent(a.usage) if isinstance(a.usage, (int, float)) else "-"}</td>'
                    f'<td>{escape(a.detail or "")}</td><td>{escape(channels)}</td></tr>')
    more = len(report.alerts) - len(rows)
    note = (f'<p class="none">The latest {len(rows)} of {len(report.alerts)}; '
            'guardian report --format json has them all.</p>')
    return ("<table><tr><th>Time</th><th>Subject</th><th>Level</th><th>Reason</th><th>Usage</th><th>Detail</th>"
            f"<th>Channels</th></tr>{''.join(rows)}</table>" + (note if more else ""))


def _quiet_table(report) -> str:
    if not report.quiet:
        return '<p class="none">No silence, acknowledgement or maintenance window in the period.</p>'
    rows = ["<tr>" + "".join(f"<td>{escape(cell)}</td>" for cell in quiet_row(q)) + "</tr>" for q in report.quiet]
    return f"<table><tr>{''.join(f'<th>{c}</th>' for c in QUIET_COLUMNS)}</tr>{''.join(rows)}</table>"


def _cleanups_table(report) -> str:
    if not report.cleanups:
        return '<p class="none">No cleanup closed or tried to close anything in the period.</p>'
    rows = []
    for run in reversed(report.cleanups):
        counts = "".join(f"<td>{run.results.get(result, 0)}</td>" for result in UNDO)
        rows.append(f"<tr><td class=\"time\">{_when(run.time)}</td><td>{escape(run.host)}</td><td>{run.closed}</td>"
                    f"{counts}<td>{escape(other_outcomes(run))}</td><td>{escape(run.command)}</td></tr>")
    return ("<table><tr><th>Time</th><th>Host</th><th>Closed</th><th>Archived</th><th>Purged</th><th>Restored</th>"
            f"<th>Other outcomes</th><th>By</th></tr>{''.join(rows)}</table>")
