"""Commands of the daemon: run, check-config, status."""

from __future__ import annotations

import argparse
import json
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bridge.cli.progress import Progress
from bridge.config import load_config

EXIT_OK = 0
EXIT_INVALID = 1


def register(subparsers: Any) -> None:
    """Add the daemon's commands."""
    run = subparsers.add_parser("run", help="run the bridge daemon")
    run.add_argument("--config", type=Path, required=True, metavar="FILE")
    run.set_defaults(run=run_run)

    check = subparsers.add_parser("check-config", help="validate a configuration file and print what it means")
    check.add_argument("--config", type=Path, required=True, metavar="FILE")
    check.set_defaults(run=run_check_config)

    status = subparsers.add_parser("status", help="the ledger and the running daemon's state")
    status.add_argument("--config", type=Path, required=True, metavar="FILE")
    status.add_argument("--json", action="store_true", help="machine-readable output")
    status.set_defaults(run=run_status)
    register_replay(subparsers)

    report = subparsers.add_parser("report", help="the daily reconciliation report (table, or --json)")
    report.add_argument("--config", type=Path, required=True, metavar="FILE")
    report.add_argument("--date", metavar="YYYY-MM-DD", help="the UTC day (default today)")
    report.add_argument("--json", action="store_true", help="machine-readable output")
    report.set_defaults(run=run_report)


def run_run(args: argparse.Namespace) -> int:
    from bridge.logs import configure_logging
    from bridge.service import run_daemon

    config = load_config(args.config)
    configure_logging(config.log.level, config.log.format)
    return run_daemon(config)


def run_check_config(args: argparse.Namespace) -> int:
    """Run every check the daemon's start-up runs (load_startup: folders, TLS, broker URLs, encryption key,
    definitions, rules, signing key, trust), creating and connecting nothing; errors name the key."""
    from bridge.service import load_startup

    config = load_config(args.config)
    startup = load_startup(config, create_dev_key=False)
    for reference in startup.definitions:  # the daemon compiles each on first use; here every one is checked now
        startup.definitions[reference]
    signing_key = config.signing.key or "development key in the state folder (not for production)"
    print(f"{args.config}: valid")
    for warning in config.warnings:  # deprecated keys: valid, but to be renamed
        print(f"dtn-bridge: WARNING: {args.config}: {warning}", file=sys.stderr)
    print(f"  participant  {config.participant.id} (role {config.participant.role})")
    print(f"  broker       {', '.join(config.broker.redacted_urls)}{' (TLS)' if startup.tls else ''}")
    print(f"  inbound      {config.watch.inbound} ({config.watch.mode})")
    print(f"  archive      {config.spool.archive}{' (encrypted)' if startup.cipher else ''}")
    print(f"  quarantine   {config.spool.quarantine}")
    print(f"  state        {config.state.dir}")
    print(f"  signing key  {signing_key}{f' (kid {startup.signer.kid})' if startup.signer else ''}")
    print(f"  trust        {config.signing.trust or 'none: outbound events wait in their queue'}"
          f"{f' ({len(startup.trust.keys)} keys)' if startup.trust else ''}")
    own = config.flows.definitions  # folders over the shipped definitions
    from_own = sum(startup.definitions.path_of(reference).parent in own for reference in startup.definitions)
    folders = f", {from_own} from {', '.join(map(str, own))}" if own else ""
    print(f"  flows        {len(startup.definitions)} definitions (shipped{folders})"
          f"{' (strict ranges)' if config.flows.strict else ''}")
    return EXIT_OK


def run_status(args: argparse.Namespace) -> int:
    """Pending, in flight, quarantined with reasons, published today, and whether the daemon has its broker."""
    from bridge.adapters.ledger import Ledger
    from bridge.service import STATUS_FILE

    config = load_config(args.config)
    inbound = Path(config.watch.inbound)
    waiting = sorted(p.name for p in inbound.iterdir() if p.is_file()) if inbound.is_dir() else []
    status_path = Path(config.state.dir) / STATUS_FILE
    daemon = json.loads(status_path.read_text()) if status_path.exists() else {}
    ledger_path = Path(config.state.ledger_path)
    summary = None
    if ledger_path.exists():
        with Ledger(ledger_path) as ledger:
            summary = ledger.summary(datetime.now(UTC).date())
    if args.json:
        out = {"waiting": len(waiting), "daemon": daemon,
               "ledger": None if summary is None else {
                   "claimed": summary.claimed, "in_flight": summary.in_flight,
                   "published_today": summary.published_today, "archived_today": summary.archived_today,
                   "quarantined_today": summary.quarantined_today, "quarantined_total": summary.quarantined_total,
                   "recent_quarantined": [{"file": q.original_name, "reason": q.reason, "path": q.path}
                                          for q in summary.recent_quarantined]}}
        print(json.dumps(out, indent=2, default=str))
        return EXIT_OK
    state = daemon.get("state", "never started")
    print(f"daemon:      {state} (pid {daemon.get('pid', '-')}, updated {daemon.get('updated_at', '-')})")
    print(f"broker:      {'connected' if daemon.get('broker_connected') else 'NOT connected'}")
    if daemon.get("last_error"):
        print(f"last error:  {daemon['last_error']}")
    if daemon.get("outbound_error"):
        print(f"outbound:    NOT writing: {daemon['outbound_error']} (retrying; events wait in their queue)")
    print(f"waiting:     {len(waiting)} file(s) in {inbound}")
    if summary is None:
        print("ledger:      empty (no file processed yet)")
        return EXIT_OK
    print(f"in flight:   {summary.claimed + summary.in_flight} (claimed {summary.claimed}, parsed {summary.in_flight})")
    print(f"today:       {summary.published_today} published, {summary.archived_today} archived, "
          f"{summary.quarantined_today} quarantined")
    print(f"quarantined: {summary.quarantined_total} in all")
    for item in summary.recent_quarantined:
        print(f"  {item.original_name}: {item.reason}")
    return EXIT_OK


def register_replay(subparsers: Any) -> None:
    """`dtn-bridge replay`: read the event store from a time; rebuild files or republish."""
    replay = subparsers.add_parser("replay", help="replay the event store: rebuild DTN files or republish events")
    replay.add_argument("--config", type=Path, required=True, metavar="FILE")
    replay.add_argument("--since", required=True, metavar="TIME", help="ISO 8601 time or date (UTC when naive)")
    replay.add_argument("--until", metavar="TIME", help="stop at the first event stored after this time")
    replay.add_argument("--flow", help="only this flow: D0010, or D0010002 for one version")
    replay.add_argument("--participant", metavar="ID", help="only events from or to this participant")
    target = replay.add_mutually_exclusive_group(required=True)
    target.add_argument("--to-dir", type=Path, metavar="DIR", help="rebuild the DTN files into DIR")
    target.add_argument("--republish", metavar="PREFIX", help="republish under PREFIX.<original routing key>")
    replay.add_argument("--idle-seconds", type=float, default=3.0, help="stop after this long without an event")
    replay.set_defaults(run=run_replay)


def run_replay(args: argparse.Namespace) -> int:
    """Replay with a progress line on a terminal and a summary at the end."""
    from bridge.adapters.rabbitmq import RabbitConsumer, RabbitPublisher
    from bridge.adapters.tls import broker_connection_options
    from bridge.dtn.definitions import load_definitions
    from bridge.replay import FileAssembler, ReplayFilter, ReplaySummary, parse_time, replay
    from bridge.service import load_trust, topology_for

    config = load_config(args.config)
    try:
        since = parse_time(args.since)
        until = parse_time(args.until) if args.until else None
    except ValueError as exc:
        print(f"dtn-bridge: --since/--until: {exc}", file=sys.stderr)
        return 2
    trust = load_trust(config)
    if trust is None:
        print("dtn-bridge: WARNING: signing.trust is not configured: this replay is UNVERIFIED (stored events are "
              "replayed without checking their signatures)", file=sys.stderr)
    topology = topology_for(config)
    assert topology.store_queue is not None
    tls = broker_connection_options(config.broker)
    consumer = RabbitConsumer(list(config.broker.urls), queue=topology.store_queue, prefetch=500,
                              topology=topology, declare=False, heartbeat=config.broker.heartbeat,
                              connect_timeout=config.broker.connect_timeout, client_name="dtn-bridge-replay",
                              consumer_arguments={"x-stream-offset": since}, **tls)
    publisher = None
    assembler = None
    if args.to_dir is not None:
        args.to_dir.mkdir(parents=True, exist_ok=True)
        assembler = FileAssembler(load_definitions(config.flows.definitions), args.to_dir)
    else:
        publisher = RabbitPublisher(list(config.broker.urls), topology=topology, client_name="dtn-bridge-replay",
                                    **tls)

    line = Progress("replaying", unit="events read")

    def progress(summary: ReplaySummary) -> None:
        line.update(summary.read, f"{summary.replayed} replayed, {len(summary.files_written)} files")

    try:
        with line:
            summary = replay(consumer, since=since, selection=ReplayFilter(args.flow, args.participant, until),
                             idle_seconds=args.idle_seconds, assembler=assembler, publisher=publisher,
                             republish_prefix=args.republish, progress=progress, trust=trust)
    finally:
        consumer.close()
        if publisher is not None:
            publisher.close()
    print(f"replay: {summary.read} events read, {summary.replayed} replayed"
          + (f", {len(summary.files_written)} files rebuilt in {args.to_dir}" if assembler else
             f", republished under {args.republish}.*")
          + ("" if summary.verified else " (UNVERIFIED)")
          + (f", {len(summary.bad_events)} bad" if summary.bad_events else ""))
    for item in summary.incomplete_files:
        print(f"  incomplete: {item}")
    for item in summary.bad_events:
        print(f"dtn-bridge: replay: {item}", file=sys.stderr)
    return EXIT_INVALID if summary.bad_events else EXIT_OK


def run_report(args: argparse.Namespace) -> int:
    """Files in, events out, files written, rejected, by flow and participant, for one UTC day."""
    from datetime import date, timedelta

    from bridge.adapters.ledger import Ledger
    from bridge.reconciliation import reconcile

    config = load_config(args.config)
    day = date.fromisoformat(args.date) if args.date else datetime.now(UTC).date()
    start = datetime(day.year, day.month, day.day, tzinfo=UTC)
    end = start + timedelta(days=1)
    ledger_path = Path(config.state.ledger_path)
    if not ledger_path.exists():
        print(f"no ledger at {ledger_path}: the daemon has not run yet")
        return EXIT_OK
    with Ledger(ledger_path) as ledger:
        report = reconcile(day.isoformat(), ledger.files_claimed_between(start, end),
                           ledger.outbound_files_written_between(start, end))
    print(json.dumps(report.as_json(), indent=2) if args.json else report.table())
    return EXIT_OK
