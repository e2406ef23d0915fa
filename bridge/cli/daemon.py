"""Commands of the daemon: run, check-config, status."""

from __future__ import annotations

import argparse
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bridge.config import load_config

EXIT_OK = 0


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


def run_run(args: argparse.Namespace) -> int:
    from bridge.logs import configure_logging
    from bridge.service import run_daemon

    config = load_config(args.config)
    configure_logging(config.log.level, config.log.format)
    return run_daemon(config)


def run_check_config(args: argparse.Namespace) -> int:
    """Load the configuration (errors name the key) and the flow definitions it points at."""
    from bridge.dtn.definitions import load_definitions

    config = load_config(args.config)
    definitions = load_definitions(config.flows.definitions)
    print(f"{args.config}: valid")
    print(f"  participant  {config.participant.id} (role {config.participant.role})")
    print(f"  broker       {', '.join(config.broker.redacted_urls)}")
    print(f"  inbound      {config.watch.inbound} ({config.watch.mode})")
    print(f"  archive      {config.spool.archive}")
    print(f"  quarantine   {config.spool.quarantine}")
    print(f"  state        {config.state.dir}")
    print(f"  signing key  {config.signing.key or 'development key in the state folder (not for production)'}")
    print(f"  flows        {len(definitions)} definitions from {config.flows.definitions}"
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
