"""What `guardian doctor` and `guardian notify-test` print."""

from __future__ import annotations

import json
from dataclasses import asdict

import click

from guardian.core.diagnosis import Diagnosis
from guardian.core.records import Delivery


def print_results(results: list[Diagnosis], fmt: str) -> None:
    if fmt == "json":
        click.echo(json.dumps([{**asdict(r), "usable": r.usable} for r in results], indent=2))
        return
    for r in results:
        verdict = "usable" if r.usable else "NOT usable"
        click.echo(f"{r.host} ({r.url}): {verdict}")
        if r.reachable:
            click.echo(f"  server {r.server_version}, protocol {r.protocol}, scopes {', '.join(r.scopes) or 'none'}")
        click.echo(f"  token: {r.token}; tls: {r.tls}; device: {r.device}")
        if r.cleanup_mode:
            click.echo(f"  cleanup mode: {r.cleanup_mode}")
        for problem in r.problems:
            click.echo(f"  problem: {problem}")


def print_deliveries(deliveries: list[Delivery], as_json: bool) -> None:
    """notify-test's answer: per channel, delivered or the error."""
    if as_json:
        click.echo(json.dumps({"channels": [{"channel": d.channel, "delivered": d.error is None, "error": d.error}
                                            for d in deliveries]}, indent=2))
        return
    for d in deliveries:
        click.echo(f"{d.channel}: {'delivered' if d.error is None else f'failed: {d.error}'}")
