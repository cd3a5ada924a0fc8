"""Monitoring verbs: status (live terminal view), watch (alerts), serve (web dashboard)."""

from __future__ import annotations

import contextlib
import datetime as dt
import sys
import time
from typing import Any

import click

from ledger.cli import cli, read_options, store_option

STATUS_STYLE = {
    "running": "green",
    "stalled": "bold yellow",
    "failed": "bold red",
    "killed": "red",
    "finished": "blue",
}


def _age(seconds: float | None) -> str:
    if seconds is None:
        return ""
    from ledger.durations import format_duration

    return format_duration(max(0.0, seconds))


def status_table(frame: Any, *, title: str) -> Any:
    """A rich table of ``analytics.monitor.status`` rows (a frame, or the dicts of
    ``status_rows``), status-coloured."""
    from rich.table import Table

    rows = frame if isinstance(frame, list) else list(frame.iter_rows(named=True))

    table = Table(title=title, header_style="bold", expand=False)
    for name, justify in (
        ("run", "left"), ("project/experiment", "left"), ("status", "left"),
        ("step", "right"), ("progress", "right"), ("eta", "right"), ("metrics", "left"),
        ("heartbeat", "right"), ("cpu", "right"), ("gpu", "right"), ("cost", "right"),
    ):  # fmt: skip
        table.add_column(name, justify=justify, overflow="fold")  # type: ignore[arg-type]
    for row in rows:
        style = STATUS_STYLE.get(row["status"], "")
        status = f"[{style}]{row['status']}[/]" if style else row["status"]
        if row["status"] in ("failed", "killed") and row["message"]:
            status += f"\n[dim]{row['message'][:60]}[/]"
        total = row["total_steps"]
        progress = ""
        if row["percent"] is not None:
            filled = int(row["percent"] / 10)
            progress = f"{'█' * filled}{'░' * (10 - filled)} {row['percent']:.0f}%"
        table.add_row(
            f"{row['name']}\n[dim]{row['run_id'][:12]}[/]",
            f"{row['project']}/{row['experiment']}",
            status,
            "" if row["step"] is None else f"{row['step']}" + (f"/{total}" if total else ""),
            progress,
            _age(row["eta_s"]),
            row["metrics"],
            _age(row["heartbeat_age_s"]) + (" ago" if row["heartbeat_age_s"] is not None else ""),
            "" if row["cpu_util"] is None else f"{row['cpu_util']:.0f}%",
            "" if row["gpu_util"] is None else f"{row['gpu_util']:.0f}%",
            "" if row["cost_usd"] is None else f"${row['cost_usd']:.2f}",
        )
    if not rows:
        table.caption = "no running runs, and none failed or stalled lately"
    return table


@cli.command("status")
@read_options
@click.option("--project", help="Only runs of this project.")
@click.option("--watch", "live", is_flag=True, help="Refresh in place until Ctrl-C.")
@click.option("--interval", default="2s", show_default=True, help="Refresh interval with --watch.")
@click.option(
    "--recent",
    default="1h",
    show_default=True,
    help="Also show runs that failed, were killed or stalled within this window.",
)
@click.option(
    "--metric", "metrics", multiple=True, help="Key metric to show (repeatable; default: first 4)."
)
def status_cmd(
    store: str | None,
    fmt: str,
    output: str | None,
    project: str | None,
    live: bool,
    interval: str,
    recent: str,
    metrics: tuple[str, ...],
) -> None:
    """Running runs with progress, key metrics, heartbeat age, CPU/GPU use and cost so far;
    recently failed, killed or stalled runs highlighted.

    Percent and ETA appear when a run logged its expected total as the param or tag
    `ledger.total_steps`.

    \b
    ledger status --project vision
    ledger status --watch --interval 5s
    """
    from ledger.analytics.monitor import STATUS_TYPES, status_frame, store_status
    from ledger.durations import parse_duration
    from ledger.output import render_rows
    from ledger.store import open_store

    seconds = parse_duration(interval, what="interval")
    keys = list(metrics) or None
    store_obj = open_store(store)

    # Each snapshot (once, or at every --watch refresh) reads only the partitions recent
    # runs live in: its cost follows the recent activity, not the size of the store.
    def snapshot() -> Any:
        return store_status(store_obj, project=project, recent=recent, metrics=keys)

    try:
        if not live:
            rows = snapshot()
            if fmt == "table" and not output:
                from rich.console import Console

                width = None if sys.stdout.isatty() else 200
                Console(width=width).print(status_table(rows, title=_title(project)))
            else:
                numeric = [k for k, kind in STATUS_TYPES.items() if kind in (int, float)]
                render_rows(
                    rows, list(STATUS_TYPES), fmt, output, numeric=numeric, to_frame=status_frame
                )
            return
        import duckdb
        from rich.live import Live

        rows = snapshot()
        with Live(status_table(rows, title=_title(project)), auto_refresh=False) as view:
            while True:
                time.sleep(seconds)
                title = _title(project)
                try:
                    rows = snapshot()
                except (duckdb.Error, OSError) as exc:  # keep showing the last good view
                    title += f" · refresh failed: {str(exc).splitlines()[0][:80]}"
                view.update(status_table(rows, title=title), refresh=True)
    except KeyboardInterrupt:
        pass


def _title(project: str | None) -> str:
    now = dt.datetime.now().strftime("%H:%M:%S")
    return f"ledger status{' · ' + project if project else ''} · {now}"


@cli.command("watch")
@store_option
@click.option(
    "--stall-after",
    help="Alert when a run has no heartbeat or no new step for this long "
    "(default: [alerts] stall_after, else 10m).",
)
@click.option(
    "--on",
    "on",
    help="Conditions to alert on, comma-separated: failed,killed,stalled,budget,metric "
    "(default: all).",
)
@click.option("--webhook", metavar="URL", help="POST each alert as JSON (Slack-compatible).")
@click.option(
    "--exec", "exec_cmd", metavar="CMD", help="Run CMD per alert, with LEDGER_ALERT_* env vars."
)
@click.option("--interval", default="30s", show_default=True, help="Time between passes.")
@click.option("--lookback", help="Consider runs that ended within this window (default 24h).")
@click.option("--timeout", help="Webhook timeout per attempt (default 10s).")
@click.option("--retries", type=int, help="Webhook attempts per alert (default 3).")
@click.option("--once", is_flag=True, help="One pass, then exit.")
def watch_cmd(
    store: str | None,
    stall_after: str | None,
    on: str | None,
    webhook: str | None,
    exec_cmd: str | None,
    interval: str,
    lookback: str | None,
    timeout: str | None,
    retries: int | None,
    once: bool,
) -> None:
    """Alert on runs that failed, were killed or stalled, broke a cost budget or a metric
    rule ([[alerts.budget]], [[alerts.metric]] in ledger.toml). Each condition alerts
    once per run; the record lives in the store, so restarts do not repeat alerts.

    \b
    ledger watch --stall-after 10m --webhook https://hooks.slack.com/services/T/B/X
    ledger watch --on failed,killed --exec 'notify-send "$LEDGER_ALERT_TEXT"' --once
    """
    from ledger.adapters.notify import watch
    from ledger.analytics.alerts import load_rules
    from ledger.durations import parse_duration
    from ledger.store import open_store

    store_obj = open_store(store)
    rules = load_rules(
        store_obj.read_config(),
        stall_after=stall_after,
        on=on,
        webhook=webhook,
        exec_cmd=exec_cmd,
        lookback=lookback,
        timeout=timeout,
        retries=retries,
    )
    seconds = parse_duration(interval, what="interval")

    def report(result: Any) -> None:
        stamp = dt.datetime.now().strftime("%H:%M:%S")
        for alert in result.sent:
            click.echo(f"{stamp} ALERT {alert.condition}: {alert.text}")
        for alert, error in result.failed:
            click.echo(f"{stamp} not delivered ({alert.condition} {alert.run_id[:12]}): {error}",
                       err=True)  # fmt: skip
        sys.stdout.flush()

    with contextlib.suppress(KeyboardInterrupt):
        watch(store_obj, rules, interval=seconds, once=once, on_pass=report)


@cli.command("serve")
@store_option
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to bind.")
@click.option("--port", default=8765, show_default=True, type=int, help="Port (0: any free).")
@click.option(
    "--token",
    envvar="LEDGER_SERVE_TOKEN",
    help="Require this token (needed for a non-loopback --host). Open /?token=T once.",
)
def serve_cmd(store: str | None, host: str, port: int, token: str | None) -> None:
    """Serve the read-only web dashboard: runs, run pages, compare, leaderboard,
    importance and costs, with live updates of running runs.

    \b
    ledger serve                       # http://127.0.0.1:8765
    ledger serve --host 0.0.0.0 --token "$(openssl rand -hex 16)"
    """
    from ledger.web.server import make_server

    server = make_server(store, host=host, port=port, token=token)
    url = f"http://{server.display_host}:{server.server_port}/"
    click.echo(f"ledger dashboard on {url}" + (f"?token={token}" if token else ""), err=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
