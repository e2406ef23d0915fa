"""The composition root: configuration -> adapters -> chains, and the daemon's signals and drain.

This is the one place where real adapters are chosen and connected (nothing connects at import time), and the one
place that reads the configuration for the chains: they, and their worker processes, get plain values from here.
`Daemon` builds everything once; `run_daemon` starts its two peers, the inbound loop (bridge/inbound/loop.py) and
the outbound loop (bridge/outbound/loop.py), each on a thread, and stops them together.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import Any

import structlog

from bridge.adapters.encryption import FileCipher, spool_cipher
from bridge.adapters.ledger import Ledger
from bridge.adapters.locks import HeldLock, try_hold
from bridge.adapters.metrics import Metrics, MetricsServer, make_readiness
from bridge.adapters.pair import SharedOutbound
from bridge.adapters.processes import ChildProcess
from bridge.adapters.rabbitmq import RabbitConsumer, RabbitPublisher, broker_endpoint_labels
from bridge.adapters.rabbitmq.topology import Topology
from bridge.adapters.spool import FolderOutbox, Spool, make_folders, write_atomic
from bridge.adapters.systemd import Heartbeat, Notifier, watchdog_interval
from bridge.adapters.tls import BrokerTlsOptions, broker_connection_options
from bridge.adapters.watcher import DropWatcher
from bridge.config import BridgeConfig, check_folders, load_config
from bridge.dtn.definitions import DefinitionSet, load_definitions
from bridge.dtn.reader import FlowFileReader
from bridge.errors import BridgeError, ConfigError, SignatureError, StorageError
from bridge.inbound import BuildStage, InboundPipeline, built_messages
from bridge.inbound.loop import InboundLoop
from bridge.inbound.workers import BuildValues, BuildWorker
from bridge.outbound import CheckStage, InlineChecks, MessageChecker, OutboundLoop, OutboundWriter
from bridge.outbound.workers import CheckValues, CheckWorkers
from bridge.ports import PublishResult
from bridge.rules import Decision, RulesDocument, RuleSet
from bridge.signing import Signer, TrustStore, check_private_key_permissions
from bridge.signing.keys import private_key_pem, write_private_key

log = structlog.get_logger("dtn_bridge.service")

DEV_KEY_NAME = "dev-signing.key.pem"
DEV_JWKS_NAME = "dev-signing.jwks.json"  # written beside the development key, with it
STATUS_FILE = "status.json"
PROCESSING_LOCK_SUFFIX = ".dtn-bridge.lock"  # .<processing folder's name><this>, beside the folder


def topology_for(config: BridgeConfig) -> Topology:
    """The broker objects this configuration declares."""
    broker = config.broker
    topology = Topology(store_max_age=broker.stream_max_age, outbound_delivery_limit=broker.outbound_delivery_limit,
                        rejected_max_length=broker.rejected_max_length,
                        outbound_single_active_consumer=config.outbound.single_active_consumer)
    suffix = broker.topology_suffix
    return topology.with_suffix(suffix) if suffix else topology


def ensure_folders(config: BridgeConfig) -> tuple[Path, ...]:
    """Create the bridge's folders (parents too) with `spool.dir_mode`; existing folders are left as they are.

    `check_folders` runs first, so a refused configuration leaves no folder behind."""
    check_folders(config)
    for folder in config.folders:
        make_folders(folder, config.spool.dir_mode)
    return config.folders


def hold_processing(config: BridgeConfig) -> HeldLock:
    """The processing folder, this daemon's own while it runs: claims found there at start are resumed as this
    daemon's, so a second daemon (of a pair) sharing it would publish another's file again. The lock file is a
    hidden file beside the folder (inside, it would be taken for a claim by older tools and tests)."""
    processing = Path(config.spool.processing)
    try:
        held = try_hold(processing.parent / f".{processing.name}{PROCESSING_LOCK_SUFFIX}", config.spool.file_mode)
    except StorageError as exc:
        log.warning("processing_not_locked", error=str(exc),
                    advice="nothing stops a second daemon from sharing spool.processing: give each its own")
        return HeldLock(processing, None)
    if isinstance(held, str):
        raise ConfigError("spool.processing", f"{processing} is in use by another bridge ({held}): each daemon, "
                          "each of a pair too, needs its own processing folder and state.dir",
                          str(config.source) if config.source else None)
    return held


def log_config_warnings(config: BridgeConfig) -> None:
    """Each deprecated key the configuration used, once per load (check-config prints them instead)."""
    for warning in config.warnings:
        log.warning("config_deprecated", source=str(config.source), detail=warning)


def load_signer(config: BridgeConfig, *, create: bool = True) -> Signer | None:
    """The configured signing key, or a development key generated into the state folder with a loud warning.

    `create` False (check-config) checks a development key that exists and returns None for one not made yet."""
    if config.signing.key is not None:
        check_private_key_permissions(config.signing.key)
        return Signer.from_key_file(config.signing.key)
    path = Path(config.state.dir) / DEV_KEY_NAME
    if not path.exists():
        if not create:
            return None
        make_folders(path.parent, config.spool.dir_mode)  # the key comes before the other folders are made
        signer = Signer.generate()  # ES256, the default; a key made before (EdDSA, say) is kept as it is
        write_private_key(path, signer.private_key)
        (path.parent / DEV_JWKS_NAME).write_text(json.dumps(signer.public_jwks(), indent=2) + "\n")
        log.warning("development_signing_key_generated", path=str(path), kid=signer.kid, alg=signer.alg,
                    advice="a development key: production configs must name signing.key")
        return signer
    check_private_key_permissions(path)
    signer = Signer.from_key_file(path)
    if create:
        log.warning("development_signing_key_in_use", path=str(path), kid=signer.kid, alg=signer.alg,
                    advice="a development key: production configs must name signing.key")
    return signer


def load_trust(config: BridgeConfig) -> TrustStore | None:
    """The public keys outbound events must be signed with (None without signing.trust: nothing is consumed)."""
    if config.signing.trust is None:
        return None
    return TrustStore.from_jwks_file(config.signing.trust, ca_bundle=config.signing.ca_bundle)


def rules_document(config: BridgeConfig) -> RulesDocument:
    """The configuration's `rules:` section as plain values (for the daemon and its worker processes alike)."""
    return RulesDocument(config.rules, config.participant.id, config.participant.role,
                         str(config.source) if config.source else None)


def build_values(config: BridgeConfig, signer: Signer) -> BuildValues:
    """What the inbound build workers build their chain from."""
    return BuildValues(config.flows.definitions, config.flows.strict, config.checks.severities, rules_document(config),
                       private_key_pem(signer.private_key), (config.log.level, config.log.format))


def check_values(config: BridgeConfig) -> CheckValues:
    """What the outbound check workers build their checker from (started only with signing.trust)."""
    assert config.signing.trust is not None, "check workers are started only with signing.trust"
    return CheckValues(config.flows.definitions, rules_document(config), config.signing.trust,
                       config.signing.ca_bundle, (config.log.level, config.log.format))


def load_rules(config: BridgeConfig, definitions: DefinitionSet) -> RuleSet:
    """The governance rules of the configuration (defaults when it has no `rules:` section)."""
    rules = rules_document(config).parse(definitions)
    if rules.test_data.exchange is not None:
        raise ConfigError("rules.test_data.exchange", "a separate exchange for test traffic is not supported yet; "
                          "test events go to the main exchange under rules.test_data.routing_key_prefix")
    return rules


@dataclass(frozen=True, slots=True)
class Startup:
    """What the daemon loads from a configuration before it creates a folder or dials the broker."""

    definitions: DefinitionSet
    rules: RuleSet
    signer: Signer | None  # None only from check-config, when the development key is not generated yet
    trust: TrustStore | None
    cipher: FileCipher | None
    tls: BrokerTlsOptions


def load_startup(config: BridgeConfig, *, create_dev_key: bool = True) -> Startup:
    """Every check start-up (and a reload) runs on a configuration, in one place: `check-config` calls it too, so a
    configuration it calls valid is one `run` accepts. Each failure is a ConfigError naming the key at fault."""
    source = str(config.source) if config.source else None
    check_folders(config)
    with _named("broker.tls", source):
        tls = broker_connection_options(config.broker)
    with _named("broker.urls", source):
        broker_endpoint_labels(config.broker.urls, heartbeat=config.broker.heartbeat,
                               connect_timeout=config.broker.connect_timeout, **tls)
    with _named("spool.encryption_key", source):
        cipher = spool_cipher(config.spool)
    definitions = load_definitions(config.flows.definitions)
    rules = load_rules(config, definitions)
    with _named("signing.key", source):
        signer = load_signer(config, create=create_dev_key)
    with _named("signing.trust", source):
        # the development key's own JWKS is written with that key: not there yet when check-config did not make it
        to_come = signer is None and config.signing.trust == Path(config.state.dir) / DEV_JWKS_NAME
        trust = None if to_come else load_trust(config)
    return Startup(definitions, rules, signer, trust, cipher, tls)


@contextlib.contextmanager
def _named(key: str, source: str | None) -> Iterator[None]:
    """A key or store that cannot be used becomes a ConfigError naming `key` (an adapter's ConfigError keeps its own
    key and gains the file's name)."""
    try:
        yield
    except ConfigError as exc:
        if exc.source is not None:
            raise ConfigError(key, str(exc), source) from exc
        raise ConfigError(exc.key, exc.message, source) from exc
    except (SignatureError, StorageError) as exc:
        raise ConfigError(key, str(exc), source) from exc


@dataclass
class StatusBoard:
    """What `dtn-bridge status` shows of the running daemon (the ledger shows the rest), kept in a small file."""

    path: Path
    values: dict[str, Any] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)  # the inbound and the outbound thread both write

    def update(self, **values: Any) -> None:
        with self.lock:
            self.values.update(values, pid=os.getpid(), updated_at=datetime.now(UTC).isoformat())
            try:
                write_atomic(self.path, json.dumps(self.values).encode(), mode=0o640)
            except StorageError as exc:  # status is informative; never stop the work for it
                log.warning("status_not_written", error=str(exc))


class Daemon:
    """The daemon's adapters and its two peers, built once from a configuration: the inbound loop (watch, claim,
    publish) and the outbound loop (consume, check, write), sharing the ledger, the metrics and the status."""

    def __init__(self, config: BridgeConfig, *, publisher: RabbitPublisher | None = None,
                 metrics: Metrics | None = None, notifier: Notifier | None = None,
                 heartbeat: Heartbeat | None = None,
                 clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self.config = config
        self.clock = clock
        self.metrics = metrics or Metrics()
        self.notifier = notifier or Notifier(None)
        self.heartbeat = heartbeat or Heartbeat(self.notifier, None)
        log_config_warnings(config)
        startup = load_startup(config)  # every check runs before a folder is made or a worker started
        ensure_folders(config)
        self._processing_lock = hold_processing(config)
        self.ledger = Ledger(config.state.ledger_path)
        self.spool = Spool(config.spool.processing, config.spool.archive, config.spool.quarantine,
                           file_mode=config.spool.file_mode, dir_mode=config.spool.dir_mode,
                           cipher=startup.cipher)
        self.tls = startup.tls
        self.trust = startup.trust
        self.publisher = publisher or RabbitPublisher(
            list(config.broker.urls), topology=topology_for(config), window=config.broker.confirm_window,
            heartbeat=config.broker.heartbeat, connect_timeout=config.broker.connect_timeout, **self.tls)
        self.status = StatusBoard(Path(config.state.dir) / STATUS_FILE)
        pipeline, watcher = self._chain(config, startup)
        self.inbound = InboundLoop(pipeline, watcher, spool=self.spool, publisher=self.publisher,
                                   metrics=self.metrics, notifier=self.notifier, heartbeat=self.heartbeat,
                                   status=self.status.update, broker_labels=list(config.broker.redacted_urls),
                                   shadow=config.inbound.shadow, reload=self.reload,
                                   connect_seconds=config.broker.connect_timeout * len(config.broker.urls) + 30.0)
        self.outbound_writer: OutboundWriter | None = None
        self.outbound: OutboundLoop | None = None
        self.outbound_consumer: RabbitConsumer | None = None
        self.outbound_held: str | None = None  # why the outbound side writes nothing now (None: it writes)

    def outbound_loop(self) -> OutboundLoop:
        """The daemon's outbound peer (consumes `dtn.outbound`; checks, governs, batches, writes, acks), sharing
        the ledger. Without signing.trust it consumes nothing: events wait in their queue (docs/outbound.md)."""
        config = self.config
        self.outbound_writer = OutboundWriter(self.definitions, self.ledger, config.outbound,
                                             outbox=FolderOutbox(config.outbound.folder, config.outbound.file_mode),
                                             checks=config.checks.severities, shared=self._pair_state(config))
        topology = topology_for(config)
        assert topology.outbound_queue is not None
        consumer = RabbitConsumer(list(config.broker.urls), queue=topology.outbound_queue,
                                  prefetch=config.outbound.prefetch, topology=topology,
                                  heartbeat=config.broker.heartbeat, connect_timeout=config.broker.connect_timeout,
                                  client_name="dtn-bridge-outbound", **self.tls)
        self.outbound_consumer = consumer
        outbound_metrics = self.metrics
        self.outbound = OutboundLoop(
            consumer, self.outbound_writer, self._outbound_checks(config, self.trust),
            on_written=outbound_metrics.outbound_events_written.inc,
            on_rejected=lambda code: outbound_metrics.outbound_events_rejected.labels(code=code).inc(),
            on_decision=self.count_decision, on_interrupted=self.outbound_interrupted)
        return self.outbound

    @staticmethod
    def _pair_state(config: BridgeConfig) -> SharedOutbound | None:
        """The outbound state shared with the other daemon of an active/standby pair (outbound.shared_state)."""
        folder = config.outbound.shared_state
        if folder is None:
            return None
        return SharedOutbound(folder, config.outbound.folder, file_mode=config.spool.file_mode,
                              dir_mode=config.spool.dir_mode)

    def outbound_interrupted(self, error: str | None) -> None:
        """The outbound side stopped writing (a full disk, the broker, a worker), or writes again (None)."""
        self.outbound_held = error
        self.status.update(outbound_error=error)
        self.metrics.set_outbound_held(error)

    def outbound_problem(self) -> str | None:
        """What keeps the outbound side from consuming and writing, for /readyz; None when it works or is off by
        configuration (shadow mode, or no signing.trust: nothing is consumed)."""
        loop, consumer = self.outbound, self.outbound_consumer
        if self.config.inbound.shadow or loop is None or loop.checks is None or consumer is None:
            return None
        if self.outbound_held is not None:
            return f"writing held: {self.outbound_held}"
        return None if consumer.connected else "consumer not connected to the broker"

    def _outbound_checks(self, config: BridgeConfig, trust: TrustStore | None) -> CheckStage | None:
        """Stage 1 of the outbound half with the current definitions and rules: in worker processes, or here.

        `trust` is read by load_startup even for the workers: a bad trust file stops the start, once."""
        if trust is None:
            return None
        if config.outbound.workers:
            return CheckWorkers(check_values(config), config.outbound.workers, spawn=ChildProcess)  # started lazily
        return InlineChecks(MessageChecker(self.definitions, trust, self.rules))

    def _chain(self, config: BridgeConfig, startup: Startup) -> tuple[InboundPipeline, DropWatcher]:
        """What a reload can change: definitions, signing key, inbound policy, and the watched folder."""
        definitions, rules, signer = startup.definitions, startup.rules, startup.signer
        assert signer is not None  # load_startup creates the development key unless check-config asks
        reader = FlowFileReader(definitions, strict=config.flows.strict, checks=config.checks.severities)
        self.definitions, self.rules = definitions, rules
        build: BuildStage
        if config.inbound.workers:
            worker = BuildWorker(build_values(config, signer), config.inbound.workers, spawn=ChildProcess)
            worker.start()
            build = worker
        else:
            build = functools.partial(built_messages, reader=reader, rules=rules, sign=signer.signed_json)
        pipeline = InboundPipeline(reader=reader, build=build, sign=signer.signed_json, publisher=self.publisher,
                                   ledger=self.ledger, spool=self.spool, rules=rules, on_decision=self.count_decision,
                                   on_published=self.count_published, allow=self.heartbeat.allow,
                                   duplicates=config.inbound.duplicates,
                                   max_file_bytes=config.inbound.max_file_bytes,
                                   max_line_bytes=config.inbound.max_line_bytes, shadow=config.inbound.shadow,
                                   clock=self.clock)
        watch = config.watch
        watcher = DropWatcher(watch.inbound, mode=watch.mode, stable_seconds=watch.stable_seconds,
                              trust_renames=watch.trust_renames,
                              rescan_seconds=watch.rescan_seconds, poll_interval=watch.poll_interval,
                              ignore=watch.ignore)
        return pipeline, watcher

    def count_published(self, result: PublishResult) -> None:
        self.metrics.events_published.inc(result.published)
        self.metrics.events_confirmed.inc(result.confirmed)

    def count_decision(self, decision: Decision, count: int = 1) -> None:
        """Every governance decision is counted (and logged at debug, without data values); `count`: that many
        events in a row had it."""
        self.metrics.governance_decision(decision, count)
        log.debug("governance_decision", rule=decision.rule, outcome=decision.outcome, flow=decision.flow,
                  participant=decision.participant, events=count)

    def reload(self) -> bool:
        """Load the configuration file again; a bad one is refused and the running one stays in force.

        Called by the inbound loop between two files (`InboundLoop.request_reload`, from SIGHUP)."""
        if self.config.source is None:
            return False
        self.notifier.reloading()
        pipeline: InboundPipeline | None = None
        try:
            new = load_config(self.config.source)
            log_config_warnings(new)
            startup = load_startup(new)
            ensure_folders(new)
            pipeline, watcher = self._chain(new, startup)
            outbound = self.outbound if self.outbound is not None and self.outbound.checks is not None else None
            # the outbound side follows too
            checks = self._outbound_checks(new, startup.trust) if outbound is not None else None
        except BridgeError as exc:
            if pipeline is not None:
                _close_pipeline(pipeline)
            log.error("reload_refused", error=str(exc), advice="the running configuration stays in force")
            self.notifier.ready("running: reload refused, the running configuration stays (see the journal)")
            return False
        fixed = [name for name in ("broker", "state", "spool") if getattr(new, name) != getattr(self.config, name)]
        if fixed:
            log.warning("reload_needs_restart", sections=fixed, advice="these sections apply at the next start")
        inbound = self.inbound
        if new.watch != self.config.watch:
            inbound.watcher.stop()
            watcher.start()
            inbound.watcher = watcher
        _close_pipeline(inbound.pipeline)
        inbound.pipeline = pipeline
        self.trust = startup.trust
        if outbound is not None and checks is not None:
            outbound.replace_checks(checks)
        self.config = replace(new, broker=self.config.broker, state=self.config.state, spool=self.config.spool)
        log.info("config_reloaded", definitions=len(pipeline.reader.definitions))
        self.notifier.ready("running: configuration reloaded")
        return True

    def close(self) -> None:
        self.status.update(broker_connected=False, state="stopped")
        _close_pipeline(self.inbound.pipeline)
        self.publisher.close()
        self.ledger.close()
        self._processing_lock.release()


def _close_pipeline(pipeline: InboundPipeline) -> None:
    """End a pipeline's threads and build worker processes."""
    pipeline.close()
    if isinstance(pipeline.build, BuildWorker):
        pipeline.build.close()


def run_daemon(config: BridgeConfig, *, drain_timeout: float = 30.0) -> int:
    """`dtn-bridge run`: the service with SIGTERM/SIGINT drain. Returns the exit code."""
    stop = threading.Event()

    notifier = Notifier.from_environment()
    heartbeat = Heartbeat(notifier, watchdog_interval())
    metrics = Metrics()

    def request_stop(signum: int, _frame: FrameType | None) -> None:
        log.info("stop_requested", signal=signal.Signals(signum).name)
        notifier.stopping()
        stop.set()

    daemon = Daemon(config, metrics=metrics, notifier=notifier, heartbeat=heartbeat)
    server = None
    if config.metrics.port is not None:
        shadow = config.inbound.shadow
        server = MetricsServer(metrics, config.metrics.address, config.metrics.port,
                               make_readiness(lambda: shadow or daemon.publisher.connected, config.folders,
                                              daemon.outbound_problem))
        server.start()
    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)
    signal.signal(signal.SIGHUP, lambda _signum, _frame: daemon.inbound.request_reload())
    log.info("daemon_starting", inbound=str(config.watch.inbound), participant=config.participant.id)
    failures: list[BaseException] = []

    def guarded(target: Callable[[threading.Event], None]) -> Callable[[], None]:
        def work() -> None:
            try:
                target(stop)
            except BaseException as exc:  # noqa: BLE001 (reported below, once, as the daemon's exit)
                failures.append(exc)
                stop.set()
        return work

    ready_status = ("running in shadow mode: nothing is published" if config.inbound.shadow
                    else "running: broker connected")
    inbound = threading.Thread(target=guarded(lambda stopping: daemon.inbound.run(stopping, lambda: notifier.ready(
        ready_status))), name="inbound", daemon=True)
    inbound.start()
    outbound = threading.Thread(target=guarded(daemon.outbound_loop().run), name="outbound", daemon=True)
    if not config.inbound.shadow:  # shadow mode writes nothing
        outbound.start()
    while inbound.is_alive() and not stop.is_set():
        heartbeat.pulse()  # systemd's watchdog: pings while the inbound loop keeps beating
        inbound.join(0.5)
    deadline = time.monotonic() + drain_timeout
    for thread in (inbound, outbound):
        while thread.is_alive() and time.monotonic() < deadline:
            heartbeat.pulse()
            thread.join(0.5)
    if inbound.is_alive() or outbound.is_alive():
        log.warning("drain_timeout", seconds=drain_timeout, advice="unfinished work resumes at the next start")
    daemon.close()
    if server is not None:
        server.stop()
    if failures:
        log.error("daemon_failed", error=f"{type(failures[0]).__name__}: {failures[0]}")
        raise failures[0]
    log.info("daemon_stopped", processed=daemon.inbound.processed)
    return 0
