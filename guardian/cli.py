"""The `guardian` command line: thin click commands over the library.

Only click is imported at start-up; each command imports what it needs when it runs, so cron's
`guardian check` and `--help` start fast. Errors reach the operator as one sentence and an exit
code; `--debug` shows the traceback instead.
"""

from __future__ import annotations

import functools
import gc
import math
import os
import sys
import time
import traceback
from dataclasses import dataclass

import click

from guardian import __version__

FORMATS = ("table", "plain", "json")
USAGE_ERROR = 2  # a config or usage error, for every command but check
UNKNOWN = 3  # check's every failure to give a verdict, as a Nagios plugin must


class Duration(click.ParamType):
    name = "DURATION"

    def convert(self, value, param, ctx):
        from guardian.settings.units import parse_duration

        try:
            seconds = parse_duration(value)
        except ValueError as exc:
            self.fail(str(exc), param, ctx)
        return seconds


def fail(message: str, code: int):
    """One sentence on stderr, and the exit code; check's is always UNKNOWN (see NagiosPlugin)."""
    click.echo(f"guardian: {message}", err=True)
    ctx = click.get_current_context(silent=True)
    if ctx is not None and isinstance(ctx.command, NagiosPlugin):
        if ctx.params.get("fmt") == "nagios" and not (ctx.params.get("as_json") or ctx.params.get("quiet")):
            click.echo(nagios_unknown(message))
        code = UNKNOWN
    sys.exit(code)


def nagios_unknown(sentence: str) -> str:
    """The Nagios line of a check without a verdict: one line, and no "|", which would start perfdata.

    Here, not in guardian.output.render: the last line of defence must not need the imports that may have failed.
    """
    return f"SESSIONS UNKNOWN - {' '.join(sentence.split()).replace('|', '/')}"


class NagiosPlugin(click.Command):
    """`check`: whatever keeps it from a verdict (a usage or config error, an unexpected failure) exits
    3, UNKNOWN, with `SESSIONS UNKNOWN - <sentence>` on stdout under --format nagios. click would exit 2
    on its own usage errors (a bad option or value), which a Nagios plugin must not."""

    def make_context(self, info_name, args, parent=None, **extra):
        asked = list(args)  # parsing uses the list up
        try:
            return super().make_context(info_name, args, parent, **extra)
        except click.UsageError as exc:
            exc.exit_code = UNKNOWN
            if any(arg == "--format=nagios" or (arg, value) == ("--format", "nagios")
                   for arg, value in zip(asked, asked[1:] + [""])):
                click.echo(nagios_unknown(exc.format_message()))
            raise

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except (click.ClickException, click.exceptions.Exit):
            raise
        except Exception:  # only with --debug does one get here: the traceback, and still UNKNOWN
            traceback.print_exc()
            sys.exit(UNKNOWN)


def friendly_errors(command):
    """Turn every failure into one sentence and an exit code (2 config, 3 anything else; check: 3 for all)."""

    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        context = click.get_current_context().find_object(Context)
        if context is not None and context.debug:
            return command(*args, **kwargs)
        from guardian.adapters.history import HistoryError
        from guardian.adapters.state import StateError
        from guardian.settings.model import ConfigError

        try:
            return command(*args, **kwargs)
        except ConfigError as exc:
            fail(f"config error: {exc}", USAGE_ERROR)
        except (StateError, HistoryError) as exc:
            fail(str(exc), 3)
        except KeyboardInterrupt:
            fail("interrupted", 130)
        except Exception as exc:  # the last line of defence: never a traceback without --debug
            fail(f"unexpected {type(exc).__name__}: {exc} (run with --debug for the traceback)", 3)

    return wrapper


config_option = click.option("--config", "config_path", metavar="FILE", envvar="GUARDIAN_CONFIG",
                             help="Config file (env GUARDIAN_CONFIG; default ~/.config/guardian/guardian.yaml).")


def host_options(command):
    """--config, --hosts and --limit, shared by every command that talks to gateways."""
    command = click.option("--limit", type=click.IntRange(min=1), metavar="N", envvar="GUARDIAN_LIMIT",
                           help="Session limit of the local gateway when there is no config file "
                                "(env GUARDIAN_LIMIT).")(command)
    command = click.option("--hosts", metavar="NAMES", help="Comma-separated subset of the configured hosts.")(command)
    return config_option(command)


class Shard(click.ParamType):
    name = "K/N"

    def convert(self, value, param, ctx):
        from guardian.settings.model import parse_shard

        try:
            return parse_shard(value)
        except ValueError as exc:
            self.fail(str(exc), param, ctx)


shard_option = click.option("--shard", type=Shard(), help="Only the hosts whose name hashes to shard K of N, "
                                                           "for N guardians splitting one fleet (e.g. 1/2).")


@dataclass
class Context:
    """What every command of one `guardian` run shares (click's ctx.obj, made by the group): --debug, and
    how a config is loaded and a warning said."""

    debug: bool = False

    def load(self, config_path: str | None, limit: int | None, shard: tuple[int, int] | None = None):
        """The config (guardian.settings.load) for this run's --shard, its warnings said on stderr."""
        from dataclasses import replace

        from guardian.settings.load import load

        config = replace(load(config_path, limit), shard=shard)
        self.warn(config.warnings)
        return config

    def warn(self, warnings) -> None:
        for warning in warnings:
            click.echo(f"guardian: warning: {warning}", err=True)


pass_context = click.make_pass_decorator(Context, ensure=True)


def write_metrics(path: str, report, config) -> None:
    """A metrics file that cannot be written is a warning: the check itself was done."""
    from guardian.adapters.history import HistoryError
    from guardian.output import metrics

    try:
        metrics.write(path, report, config.alerts, config.state_dir, config.attribution.top)
    except (OSError, HistoryError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else exc
        click.echo(f"guardian: warning: cannot write the metrics file {path} ({reason})", err=True)


def output_format(fmt: str | None, as_json: bool) -> str:
    if as_json:
        return "json"
    return fmt or ("table" if sys.stdout.isatty() else "plain")


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="guardian")
@click.option("--debug", is_flag=True, help="Show tracebacks instead of one-sentence errors.")
@click.pass_context
def main(ctx, debug):
    """Session Limit Guardian: keeps OpenClaw gateways from running out of sessions."""
    ctx.obj = Context(debug=debug)


@main.command(cls=NagiosPlugin)
@host_options
@click.option("--format", "fmt", type=click.Choice(FORMATS + ("nagios",)),
              help="Output format (default: table on a terminal, plain when piped); nagios: one line with perfdata, "
                   "for Nagios or Icinga.")
@click.option("--json", "as_json", is_flag=True, help="Short for --format json.")
@click.option("--no-notify", is_flag=True, help="Decide and show alerts, but send none, remember none and run no "
                                                "on_critical cleanup; the next run still sends them.")
@click.option("-q", "--quiet", is_flag=True, help="Print nothing on stdout (for cron); alert lines and errors still go "
                                                  "to stderr.")
@click.option(
    "--prom-file", metavar="PATH", help="Also write the metrics to PATH (Prometheus textfile-collector format)."
)
@shard_option
@friendly_errors
@pass_context
def check(app, config_path, hosts, limit, fmt, as_json, no_notify, quiet, prom_file, shard):
    """Poll every gateway at once, alert on usage, exit with the Nagios code."""
    from guardian.commands import check as checking
    from guardian.output.render import print_check

    config = app.load(config_path, limit, shard)
    gc.freeze()  # what is loaded now lives as long as the run: collections during the polls need not scan it
    report = checking.run(config, hosts, now=time.time(), act=not no_notify)
    app.warn(report.warnings[len(config.warnings):])
    for delivery in report.deliveries:
        if delivery.error:
            click.echo(f"guardian: alert channel {delivery.channel} failed ({delivery.error}); "
                       f"it will be sent again on the next run", err=True)
    if prom_file:
        write_metrics(prom_file, report, config)
    if not quiet:
        print_check(report, output_format(fmt, as_json), config.alerts.thresholds)
    if report.error:
        click.echo(f"guardian: {report.error}", err=True)
    sys.exit(report.exit_code)


@main.command()
@host_options
@click.option("--dry-run", is_flag=True, help="Print the full plan (host, key, agent, idle time, decision, "
                                              "reason, and each closable session's place in the order and why) "
                                              "and change nothing on any gateway.")
@click.option("--idle-after", type=Duration(), help="Close sessions idle longer than this (45s, 30m, 2h, 1d): "
                                                    "overrides cleanup.idle_after in this run (an agent's own "
                                                    "idle_after still applies).")
@click.option("--max-per-run", type=click.IntRange(min=1), metavar="N",
              help="Close at most N sessions per host in this run; overrides cleanup.max_per_run.")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(FORMATS),
    help="Output format (default: table on a terminal, plain when piped).",
)
@click.option("--json", "as_json", is_flag=True, help="Short for --format json.")
@click.option("-q", "--quiet", is_flag=True, help="Print only the problems (failed deletes, reserve not met), "
                                                  "on stderr.")
@shard_option
@friendly_errors
@pass_context
def cleanup(app, config_path, hosts, limit, dry_run, idle_after, max_per_run, fmt, as_json, quiet, shard):
    """Close sessions idle for hours, never a live one, recording each action in the audit log."""
    from guardian.adapters.audit import AuditLog, new_run_id
    from guardian.commands import cleanup as cleaning
    from guardian.core.planner import this_run
    from guardian.output.render import cleanup_summary, print_cleanup

    config = app.load(config_path, limit, shard)
    selected = config.select(hosts)
    rules = this_run(config.cleanup, idle_after, max_per_run)
    now, warnings, audit = time.time(), [], AuditLog(config.state_dir, new_run_id(), "cleanup")
    try:
        reports = cleaning.run(config, selected, rules, now, dry_run, audit, warnings=warnings)
    except cleaning.CleanupBusy as exc:
        fail(str(exc), 1)
    app.warn(warnings)
    code = cleaning.exit_code(reports, config.cleanup.reserve, dry_run)
    if not quiet:
        print_cleanup(reports, rules, dry_run, config.cleanup.reserve, output_format(fmt, as_json), now, audit.run_id)
    elif code:
        for report in reports:
            for line in cleanup_summary(report, config.cleanup.reserve, dry_run)[1:]:
                click.echo(line, err=True)
    sys.exit(code)


@main.command()
@host_options
@click.option("--last", is_flag=True, help="The sessions the last cleanup run closed.")
@click.option("--run", "run_id", metavar="RUN_ID",
              help="The sessions that cleanup run closed (its run_id in --json and in the audit log).")
@click.option("--key", "keys", multiple=True, metavar="KEY", help="This session key (repeat for more).")
@click.option("--since", type=Duration(), help="The sessions cleanups closed this long ago or later (45m, 2h, 1d).")
@click.option("--dry-run", is_flag=True, help="Say what would be restored, and change nothing.")
@click.option("--format", "fmt", type=click.Choice(("plain", "json")), default="plain", show_default=True,
              help="Output format.")
@click.option("--json", "as_json", is_flag=True, help="Short for --format json.")
@friendly_errors
@pass_context
def restore(app, config_path, hosts, limit, last, run_id, keys, since, dry_run, fmt, as_json):
    """Bring back sessions a cleanup archived and has not purged yet.

    \b
    Examples:
      guardian restore --last
      guardian restore --run 3f9a1c2e4b5d --dry-run
      guardian restore --key agent:main:dashboard:42 --hosts t440
      guardian restore --since 2h --json

    Per key: restored, already active, purged (or deleted: it cannot be restored), not the guardian's, or refused:
    session id changed (the key holds another session now). Every one is an audit record.
    """
    from guardian.adapters.audit import AuditLog, new_run_id
    from guardian.commands import cleanup as cleaning
    from guardian.commands import restore as restoring
    from guardian.output.render import print_restore

    if sum((last, run_id is not None, bool(keys), since is not None)) != 1:
        fail("say what to restore with exactly one of --last, --run, --key or --since", USAGE_ERROR)
    config = app.load(config_path, limit)
    now, audit = time.time(), AuditLog(config.state_dir, new_run_id(), "restore")
    selection = restoring.Selection(last=last, run_id=run_id, keys=tuple(keys),
                                    since=None if since is None else now - since)
    try:
        reports = restoring.run(config, config.select(hosts), selection, dry_run, audit)
    except cleaning.CleanupBusy as exc:
        fail(str(exc), 1)
    print_restore(reports, dry_run, "json" if as_json else fmt, now, audit.run_id)
    sys.exit(restoring.exit_code(reports, dry_run))


@main.command("notify-test")
@config_option
@click.option("--channels", "channel_names", metavar="NAMES", help="Comma-separated subset of the configured channels, "
                                                                   "by name.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON: per channel, whether it was "
                                                      "delivered, and the error.")
@friendly_errors
@pass_context
def notify_test(app, config_path, channel_names, as_json):
    """Send a sample alert to every alert channel and say, per channel, whether it was delivered."""
    from guardian.adapters.audit import AuditError, AuditLog, new_run_id
    from guardian.alerts import delivery
    from guardian.output.diagnosis import print_deliveries

    config = app.load(config_path, 1)  # no gateway is contacted: the local default needs no real limit
    channels = config.select_channels(channel_names)
    if not channels:
        fail("no alert channels are configured (alerts.channels in the config file; see the README)", 1)
    now = time.time()
    deliveries = delivery.send_samples(channels, config, now)
    try:
        delivery.record_deliveries(AuditLog(config.state_dir, new_run_id(), "notify-test"), deliveries, now)
    except AuditError as exc:  # the samples went out all the same: say what each channel did
        click.echo(f"guardian: warning: cannot append to {exc.path} ({exc.reason}); the test is not in the audit log",
                   err=True)
    print_deliveries(deliveries, as_json)
    sys.exit(1 if any(d.error for d in deliveries) else 0)


@main.command()
@host_options
@click.option("--since", default="24h", show_default=True, metavar="24h|7d|ISO",
              help="Start of the period: a duration back from now, or an ISO date/time such as 2026-11-21T08:00 "
                   "(UTC unless it gives an offset).")
@click.option("--format", "fmt", type=click.Choice(FORMATS + ("html",)),
              help="Output format: the terminal table, plain lines, JSON or a self-contained HTML page (default: "
                   "from the -o file's extension, .html, .json, else plain; without -o, table on a terminal, plain "
                   "when piped).")
@click.option("--json", "as_json", is_flag=True, help="Short for --format json.")
@click.option("-o", "--output", metavar="FILE", help="Write the report to FILE instead of stdout.")
@friendly_errors
@pass_context
def report(app, config_path, hosts, limit, since, fmt, as_json, output):
    """Usage over a period per host: levels, alerts, cleanups, and when each host will fill up."""
    from guardian.commands import report as reporting
    from guardian.output.render import print_report

    config = app.load(config_path, limit)
    now = time.time()
    try:
        start = reporting.parse_since(since, now)
    except ValueError as exc:
        fail(f"--since: {exc}", USAGE_ERROR)
    if output and not fmt and not as_json:
        fmt = {".html": "html", ".htm": "html", ".json": "json"}.get(os.path.splitext(output)[1].lower(), "plain")
    result = reporting.run(config, hosts, start, now)
    app.warn(result.warnings)
    print_report(result, output_format(fmt, as_json), output)


@main.group()
def history():
    """Samples in and out of history.db as CSV: time,kind,name,sessions,limit."""


@history.command("import")
@config_option
@click.argument("file", type=click.Path(exists=True, dir_okay=False))
@friendly_errors
@pass_context
def history_import(app, config_path, file):
    """Add the samples of a CSV file (another monitor's logs) to the history; the same file again adds nothing."""
    from pathlib import Path

    from guardian.adapters.history import History, HistoryError
    from guardian.adapters.peak_cache import forget
    from guardian.commands import report as reporting

    config = app.load(config_path, None)
    try:
        added = History(config.state_dir).import_csv(Path(file).read_bytes(), config.alerts, config.history,
                                                     time.time())
    except ValueError as exc:
        fail(f"{file}: {exc}; nothing was imported from it", 2)
    click.echo(f"{file}: imported before; nothing added" if added is None else f"{file}: {added} samples added")
    if added:
        forget(config.state_dir)  # the peak forecasts were computed without these samples
        try:
            reporting.keep_peak_forecasts(config, time.time())
        except (HistoryError, OSError) as exc:
            click.echo(f"warning: the peak forecasts were not computed again ({exc}); the next report or check will",
                       err=True)


@history.command("export")
@config_option
@click.option("--since", metavar="24h|7d|ISO", help="Start of the period (default: all the history kept).")
@click.option("-o", "--output", metavar="FILE", help="Write the CSV to FILE instead of stdout.")
@friendly_errors
@pass_context
def history_export(app, config_path, since, output):
    """Write the history as CSV: raw samples, and the latest reading of each rollup before them."""
    from guardian.adapters.history import History
    from guardian.commands.report import parse_since

    config = app.load(config_path, None)
    try:
        start = parse_since(since, time.time()) if since else -math.inf
    except ValueError as exc:
        fail(f"--since: {exc}", 2)
    if output:
        with open(output, "w", newline="") as handle:
            History(config.state_dir).export_csv(start, handle)
    else:
        History(config.state_dir).export_csv(start, click.get_text_stream("stdout"))


@main.command()
@host_options
@click.option(
    "--format",
    "fmt",
    type=click.Choice(FORMATS),
    help="Output format (default: table on a terminal, plain when piped).",
)
@click.option("--json", "as_json", is_flag=True, help="Short for --format json.")
@friendly_errors
@pass_context
def doctor(app, config_path, hosts, limit, fmt, as_json):
    """Check each host is fully usable, and say how to fix what is not."""
    from guardian.commands import doctor as diagnosis
    from guardian.output.diagnosis import print_results

    config = app.load(config_path, limit)
    results, warnings = diagnosis.run(config, hosts)
    app.warn(warnings)
    print_results(results, output_format(fmt, as_json))
    sys.exit(0 if all(r.usable for r in results) else 3)


@main.command()
@config_option
@click.option("--limit", type=click.IntRange(min=1), envvar="GUARDIAN_LIMIT",
              help="Session limit of the local gateway when there is no config file (env GUARDIAN_LIMIT).")
@click.option("--listen", metavar="HOST:PORT", help="Where to serve HTTP (default serve.listen, else 127.0.0.1:9877); "
                                                    "an address that is not loopback must be serve.listen.")
@shard_option
@friendly_errors
@pass_context
def serve(app, config_path, limit, listen, shard):
    """Run check and cleanup on a schedule, and serve /metrics, the live page and /api/v1/status over HTTP.

    SIGTERM finishes the pass in flight and exits; SIGHUP reloads the config.
    """
    from guardian.commands import serve as serving

    config = app.load(config_path, limit, shard)
    gc.freeze()  # the modules live as long as serve: each pass's collections need not scan them
    try:
        address = serving.address(config, listen)
    except ValueError as exc:
        fail(f"--listen: {exc}", USAGE_ERROR)
    serving.Service(lambda: app.load(config_path, limit, shard), config, time.time).serve_forever(address)


def names(value: str | None) -> tuple[str, ...]:
    return tuple(n.strip() for n in (value or "").split(",") if n.strip())


def quiet_errors(command):
    """A silence or acknowledgement that cannot be made: its sentence, exit 2 (inside friendly_errors)."""

    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        from guardian.core.quiet import QuietError

        try:
            return command(*args, **kwargs)
        except QuietError as exc:
            fail(str(exc), USAGE_ERROR)

    return wrapper


@main.group()
def silence():
    """Hold alerts on purpose for a while: a load test, a migration, an upgrade.

    \b
    Examples:
      guardian silence add --hosts t440 --for 2h --reason "load test"
      guardian silence add --pools shared-key --alert usage --until 2026-12-02T09:00 --reason "migration"
      guardian silence add --agents t440/sales --alert growth --for 1d --reason "import" --channels slack
      guardian silence list --all
      guardian silence remove 3f9a1c2e

    A silenced alert is still decided and shown by check; it is not sent to the channels the
    silence names (all by default), and when the silence ends they are told what is still true.
    """


@silence.command("add")
@config_option
@click.option("--hosts", metavar="NAMES", help="Comma-separated hosts (their agents too).")
@click.option("--pools", metavar="NAMES", help="Comma-separated pools.")
@click.option("--agents", metavar="HOST/AGENT,...", help="Comma-separated agents, each as HOST/AGENT.")
@click.option("--alert", "alerts", multiple=True, default=("all",), show_default=True,
              type=click.Choice(("usage", "unreachable", "growth", "rebound", "peak", "all")),
              help="The alert kinds to hold (repeat the option for several).")
@click.option("--for", "duration", type=Duration(), help="How long: 30m, 2h, 1d (at most alerts.max_silence, 7d).")
@click.option("--until", metavar="ISO", help="Until when: 2026-12-02T09:00 (UTC unless it says otherwise).")
@click.option("--reason", required=True, help="Why: shown with every alert it holds, and in the audit log.")
@click.option("--channels", metavar="NAMES", help="Comma-separated channels to hold (default: all).")
@friendly_errors
@quiet_errors
@pass_context
def silence_add(app, config_path, hosts, pools, agents, alerts, duration, until, reason, channels):
    """Silence alerts until a time; prints the silence's id."""
    from guardian.commands import silence as silencing
    from guardian.core.quiet import end_time
    from guardian.settings.model import Scope

    config, now = app.load(config_path, 1), time.time()
    scope = Scope(hosts=names(hosts), pools=names(pools), agents=names(agents),
                  alerts=() if "all" in alerts else alerts, channels=names(channels))
    made, warnings = silencing.add(config, scope, end_time(duration, until, now), reason, now)
    app.warn(warnings)
    click.echo(made.id)


@silence.command("list")
@config_option
@click.option("--json", "as_json", is_flag=True, help="Print them as JSON.")
@click.option("--all", "include_ended", is_flag=True, help="Also those that ended in the last week.")
@friendly_errors
@pass_context
def silence_list(app, config_path, as_json, include_ended):
    """The active silences, acknowledgements and maintenance windows."""
    from guardian.commands import silence as silencing
    from guardian.output.quiet import print_listing

    rows, warnings = silencing.listing(app.load(config_path, 1), time.time(), include_ended)
    app.warn(warnings)
    print_listing(rows, as_json)


@silence.command("remove")
@config_option
@click.argument("entry_id", metavar="ID")
@friendly_errors
@quiet_errors
@pass_context
def silence_remove(app, config_path, entry_id):
    """End a silence or an acknowledgement now (its id from `guardian silence list`)."""
    from guardian.commands import silence as silencing

    kind, warnings = silencing.remove(app.load(config_path, 1), entry_id, time.time())
    app.warn(warnings)
    click.echo(f"{kind} {entry_id} removed")


@main.command()
@config_option
@click.argument("subject")
@click.option("--reason", default="", help="Why, for the audit log and the alerts' views.")
@click.option("--for", "duration", type=Duration(), help="End it after this long (default: when the level changes).")
@friendly_errors
@quiet_errors
@pass_context
def ack(app, config_path, subject, reason, duration):
    """Acknowledge the level a host, pool or agent holds now: its repeats stop.

    \b
    Examples:
      guardian ack t440 --reason "on it"
      guardian ack pool:shared-key --for 4h
      guardian ack t440/sales

    A rise above the acknowledged level is told at once and ends it; a return to ok ends it with the
    usual resolved. Until then it stays, or for --for. `guardian silence remove ID` ends it.
    """
    from guardian.commands import silence as silencing

    made, warnings = silencing.acknowledge(app.load(config_path, 1), subject, reason, duration, time.time())
    app.warn(warnings)
    click.echo(f"{made.id}: {made.subject} acknowledged at {made.level}")


if __name__ == "__main__":
    main()
