"""The bridge's configuration: one YAML file -> frozen dataclasses, validated once at load.

Every key is declared once, on its dataclass field (`setting(default, "description", bounds...)`, bridge/schema.py):
the parser, the defaults, the errors, docs/configuration.md and docs/config.schema.json all come from those
declarations (`python -m bridge.config_reference` writes the last two). Every error is a `ConfigError` naming the
dotted key (`broker.heartbeat`) and the file, so a typo fails the start with one clear line instead of a surprise at
3 a.m. Unknown keys are errors (a misspelt key would otherwise silently fall back to its default). Relative paths
resolve against the folder of the config file, not the working directory, so the daemon behaves the same whoever
starts it. Pure: reads the file, creates nothing (folders are made at the edge, `bridge.service.ensure_folders`).

    config = load_config("config/bridge.yaml")
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from bridge.dtn.checks import DEFAULT_SEVERITIES, SEVERITIES, Severity
from bridge.dtn.formats import DEFAULT_MAX_LINE_BYTES
from bridge.dtn.names import NAME_PATTERN_FIELDS, name_pattern_problem
from bridge.errors import ConfigError, StorageError
from bridge.logs import redact_url
from bridge.schema import Node, Setting, describe_value, read_settings, setting, settings_of

__all__ = [
    "DEPRECATED",
    "LEDGER_FILE_NAME",
    "SECTIONS",
    "BridgeConfig",
    "BrokerConfig",
    "ChecksConfig",
    "FlowsConfig",
    "InboundConfig",
    "LogConfig",
    "MetricsConfig",
    "OutboundConfig",
    "ParticipantConfig",
    "SigningConfig",
    "SpoolConfig",
    "StateConfig",
    "TlsConfig",
    "WatchConfig",
    "check_folders",
    "load_config",
    "parse_config",
]

LEDGER_FILE_NAME = "ledger.sqlite3"
DEFAULT_IGNORE = ("*.tmp", "*.part", ".*", "~*", "*.filepart")
DEFAULT_DELIVERY_LIMIT = 1000  # broker.outbound_delivery_limit (why not RabbitMQ 4's 20: rabbitmq/topology.py)
DEFAULT_REJECTED_MAX_LENGTH = 100_000  # broker.rejected_max_length
_MPID = re.compile(r"[A-Z0-9]{4}")
_ROLE = re.compile(r"[A-Z0-9]")
_MAX_AGE = re.compile(r"[1-9][0-9]*[YMDhms]")  # RabbitMQ stream x-max-age
_SUFFIX = re.compile(r"[A-Za-z0-9._-]*")
_URL = re.compile(r"amqps?://\S+")


@dataclass(frozen=True, slots=True)
class ParticipantConfig:
    """The bridge's own market participant: MPID (4 characters) and market role code."""

    id: str = setting("DTNB", "the bridge's own MPID", pattern=_MPID, hint="an MPID: 4 upper-case letters or digits")
    role: str = setting("X", "its market role code (X = supplier)", pattern=_ROLE,
                        hint="a market role code: 1 upper-case letter or digit")


@dataclass(frozen=True, slots=True)
class TlsConfig:
    """TLS towards the broker; `None` files mean the system defaults (see docs/security.md)."""

    ca_file: Path | None = setting(None, "CA file to verify the broker (null = the system CAs)")
    cert_file: Path | None = setting(None, "client certificate for mutual TLS (with key_file)")
    key_file: Path | None = setting(None, "client private key (with cert_file)")
    server_hostname: str | None = setting(None, "name to verify, when it differs from the URL's host")
    verify: bool = setting(True, "verify the broker's certificate")
    external_auth: bool = setting(False, "log in with the client certificate (RabbitMQ EXTERNAL) instead of a "
                                         "password")


@dataclass(frozen=True, slots=True)
class BrokerConfig:
    """RabbitMQ: the URLs are tried in order (a cluster), publisher confirms bounded by `confirm_window`."""

    urls: tuple[str, ...] = setting(("amqp://guest:guest@127.0.0.1:5672/",),
                                    "RabbitMQ URLs (amqp:// or amqps://), tried in order", repr=False)  # passwords
    heartbeat: int = setting(30, "AMQP heartbeat in seconds; 0 disables heartbeats (a dead link is then seen only by "
                                 "TCP, which may take minutes)", minimum=0)
    confirm_window: int = setting(1000, "publisher confirms outstanding before publishing waits", minimum=1)
    connect_timeout: float = setting(10.0, "seconds to wait for a connection", positive=True)
    stream_max_age: str = setting("30D", "retention of the event streams (RabbitMQ x-max-age)", pattern=_MAX_AGE,
                                  hint="a RabbitMQ max-age: a number and one of Y M D h m s")
    tls: TlsConfig | None = setting(None, "null or false = plain AMQP; true = TLS with the system defaults; or a "
                                          "mapping (broker.tls.*)", kind="custom")
    outbound_delivery_limit: int | None = setting(DEFAULT_DELIVERY_LIMIT, "redeliveries of one dtn.outbound message "
        "before the broker dead-letters it to dtn.outbound.rejected (x-delivery-limit; RabbitMQ 4 would apply 20); "
        "null = not declared (set it by policy)", minimum=1)
    rejected_max_length: int | None = setting(
        DEFAULT_REJECTED_MAX_LENGTH, "messages dtn.outbound.rejected keeps; when full the next reject is refused and "
        "the event stays in dtn.outbound (x-max-length, reject-publish); null = not declared (unbounded, or by policy)",
        minimum=1)
    topology_suffix: str = setting("", "appended to every exchange and queue name (tests, side-by-side "
                                       "installations)", pattern=_SUFFIX, hint="letters, digits, '.', '_' or '-'")

    @property
    def redacted_urls(self) -> tuple[str, ...]:
        """The URLs with passwords replaced by `***`, for logs."""
        return tuple(redact_url(url) for url in self.urls)


@dataclass(frozen=True, slots=True)
class WatchConfig:
    """The DTN gateway's inbound drop folder and how to notice complete files in it."""

    inbound: Path = setting(doc="where the DTN gateway drops received flow files", yaml_default="var/dtn/inbound")
    mode: str = setting("inotify", "inotify (local disks) or polling (NFS/SMB, where inotify sees nothing)",
                        choices=("inotify", "polling"))
    rescan_seconds: float = setting(30.0, "full rescan period: catches events inotify dropped", positive=True)
    stable_seconds: float = setting(2.0, "a file written in place is complete when size and mtime stay unchanged "
                                         "this long", minimum=0.0)
    trust_renames: bool = setting(True, "a file renamed into the folder is complete at once")
    poll_interval: float = setting(1.0, "polling observer period, and the longest idle wait", positive=True)
    ignore: tuple[str, ...] = setting(DEFAULT_IGNORE, "names (fnmatch) of files still being written")


@dataclass(frozen=True, slots=True)
class SpoolConfig:
    """Where claimed files wait (processing), end (archive) or are set aside with a report (quarantine)."""

    processing: Path = setting(doc="claimed files being worked on (on inbound's filesystem)",
                               yaml_default="var/processing")
    archive: Path = setting(doc="done files, in YYYY/MM/DD folders", yaml_default="var/archive")
    quarantine: Path = setting(doc="rejected files, each with <name>.error.json", yaml_default="var/quarantine")
    file_mode: int = setting(0o640, "permissions of archived, quarantined and written files", kind="mode")
    dir_mode: int = setting(0o750, "permissions of folders the bridge creates", kind="mode")
    encryption_key: Path | None = setting(None, "AES-256 key file (mode 0600): archive and quarantine encrypted at "
                                                "rest; null = plaintext")
    encryption_keys_old: tuple[Path, ...] = setting((), "earlier key files, only to read files written before a "
                                                        "rotation")


@dataclass(frozen=True, slots=True)
class StateConfig:
    """The state folder: the ledger and, when no key is configured, the development signing key."""

    dir: Path = setting(doc="the ledger and the development signing key", yaml_default="var/state")

    @property
    def ledger_path(self) -> Path:
        """The SQLite ledger of files."""
        return self.dir / LEDGER_FILE_NAME


@dataclass(frozen=True, slots=True)
class SigningConfig:
    """`key` None means: generate a development key into the state folder on first run."""

    key: Path | None = setting(None, "PKCS#8 private key (PEM); null = a development key (ES256) in state.dir")
    trust: Path | None = setting(None, "JWKS of the keys outbound events may be signed with; null = consume nothing")
    ca_bundle: Path | None = setting(None, "PEM CA bundle for validating signers' certificates")


@dataclass(frozen=True, slots=True)
class FlowsConfig:
    """Flow definitions: the shipped ones, and over them those of `definitions` (folders of the operator's own);
    `strict` enforces the DTC ranges instead of the lenient ones."""

    definitions: tuple[Path, ...] = setting((), "folders of <flow><version>.yaml definitions that take precedence "
                                                "over the shipped ones (the first folder wins; one folder alone "
                                                "is a list of one); empty = the shipped definitions only")
    strict: bool = setting(False, "enforce the DTC group ranges, not the lenient ones real files need")


@dataclass(frozen=True, slots=True)
class ChecksConfig:
    """The severity of each named check flow definitions refer to (bridge/dtn/checks.py): error, warn or off."""

    severities: Mapping[str, Severity] = field(default_factory=lambda: dict(DEFAULT_SEVERITIES))


@dataclass(frozen=True, slots=True)
class InboundConfig:
    """Inbound policy: what to do with a file whose content was already published, size limits, workers."""

    duplicates: str = setting("skip", "a file whose content was already published: skip (archive it) or "
                                      "republish", choices=("skip", "republish"))
    max_file_bytes: int = setting(1073741824, "larger inbound files are rejected", minimum=1)
    max_line_bytes: int = setting(DEFAULT_MAX_LINE_BYTES, "a longer line is a defect, and is never held in memory "
                                                          "whole", minimum=1024)
    shadow: bool = setting(False, "parse, validate and report, but publish nothing (beside a current DTN setup)")
    workers: int = setting(2, "worker processes that build and sign events (other cores); 0 = in the daemon",
                           minimum=0, maximum=16)


@dataclass(frozen=True, slots=True)
class OutboundConfig:
    """Events -> DTN files for the gateway's outbound folder."""

    folder: Path = setting(doc="where DTN files rendered from events are written", yaml_default="var/dtn/outbound")
    batch_size: int = setting(1000, "events per file at most", minimum=1)
    batch_seconds: float = setting(30.0, "a partial batch is written after this many seconds", positive=True)
    file_mode: int = setting(0o640, "permissions of written files", kind="mode")
    name_pattern: str = setting("{flow}{version}_{from_participant}_{file_identifier}.usr",
                                "file name; placeholders: " + ", ".join(sorted(NAME_PATTERN_FIELDS)))
    prefetch: int = setting(2000, "unacknowledged messages held; twice batch_size checks the next file's events "
                                  "while one is written", minimum=1)
    workers: int = setting(2, "worker processes that check and govern events (other cores); 0 = in the daemon",
                           minimum=0, maximum=16)
    single_active_consumer: bool = setting(False, "declare the outbound queue with x-single-active-consumer: of the "
                                                  "daemons consuming it (a pair), one at a time gets messages; an "
                                                  "existing queue must be re-created to change it "
                                                  "(docs/operations.md)")
    shared_state: Path | None = setting(None, "a folder the two daemons of an active/standby pair share (file "
                                              "identifiers, a record of each written file); null = one daemon")


@dataclass(frozen=True, slots=True)
class LogConfig:
    """Log level and format (`auto`: console on a terminal, JSON otherwise)."""

    level: str = setting("info", "log level", choices=("debug", "info", "warning", "error", "critical"),
                         fold_case=True)
    format: str = setting("auto", "auto (console on a terminal, JSON otherwise), json or console",
                          choices=("auto", "json", "console"))


@dataclass(frozen=True, slots=True)
class MetricsConfig:
    """Prometheus endpoint; `port` None disables it."""

    port: int | None = setting(None, "port of /metrics, /healthz and /readyz; null = disabled", minimum=1,
                               maximum=65535)
    address: str = setting("127.0.0.1", "address the metrics endpoint listens on")


@dataclass(frozen=True, slots=True)
class BridgeConfig:
    """The whole configuration; `source` is the file it came from (None when built from a mapping); `warnings` are
    the deprecated keys it used, for the daemon to log and check-config to print."""

    participant: ParticipantConfig
    broker: BrokerConfig
    watch: WatchConfig
    spool: SpoolConfig
    state: StateConfig
    signing: SigningConfig
    flows: FlowsConfig
    inbound: InboundConfig
    outbound: OutboundConfig
    log: LogConfig
    metrics: MetricsConfig
    checks: ChecksConfig = field(default_factory=ChecksConfig)
    rules: Mapping[str, Any] | None = None  # the governance rules, validated by bridge.rules.parse_rules
    source: Path | None = field(default=None, compare=False)
    warnings: tuple[str, ...] = field(default=(), compare=False)

    @property
    def folders(self) -> tuple[Path, ...]:
        """The folders the bridge writes to or watches, in the order `ensure_folders` creates them."""
        return (
            self.watch.inbound,
            self.spool.processing,
            self.spool.archive,
            self.spool.quarantine,
            self.state.dir,
            self.outbound.folder,
        )


#: The sections of the file, in order (`checks` is a mapping of check name -> severity; `rules` see governance.md).
SECTIONS: dict[str, type] = {
    "participant": ParticipantConfig, "broker": BrokerConfig, "watch": WatchConfig, "spool": SpoolConfig,
    "state": StateConfig, "signing": SigningConfig, "flows": FlowsConfig, "inbound": InboundConfig,
    "outbound": OutboundConfig, "log": LogConfig, "metrics": MetricsConfig, "checks": ChecksConfig,
}

#: Keys still read but replaced: section -> key -> (its setting, default); a file using one loads with a warning.
DEPRECATED: dict[str, dict[str, tuple[Setting, object]]] = {
    "inbound": {
        "worker_process": (Setting("false = 0 workers", kind="boolean", deprecated="inbound.workers"),
                           True),
        "build_workers": (Setting("the number of workers", kind="integer", minimum=1, maximum=16,
                                  deprecated="inbound.workers"), 2),
    },
    "outbound": {
        "verify_workers": (Setting("the number of workers", kind="integer", minimum=0, maximum=16,
                                   deprecated="outbound.workers"), 2),
    },
}


# --------------------------------------------------------------------------------------------------------- loading


def load_config(path: str | os.PathLike[str]) -> BridgeConfig:
    """Read and validate a YAML config file; relative paths resolve against the file's folder."""
    file = Path(path).expanduser().absolute()
    source = str(file)
    try:
        text = file.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError("(file)", f"cannot read: {exc.strerror or exc}", source) from exc
    except UnicodeDecodeError as exc:
        raise ConfigError("(file)", f"not UTF-8: {exc}", source) from exc
    try:
        data = yaml.load(text, Loader=_StrictLoader)  # a SafeLoader subclass
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
        raise ConfigError("(yaml)", f"{where}{exc.problem or exc}", source) from exc
    except yaml.YAMLError as exc:
        raise ConfigError("(yaml)", str(exc), source) from exc
    if data is None:
        data = {}
    return parse_config(data, base_dir=file.parent, source=file)


def parse_config(
    data: object, *, base_dir: str | os.PathLike[str], source: str | os.PathLike[str] | None = None
) -> BridgeConfig:
    """Validate an already-parsed mapping (tests, other loaders); relative paths resolve against `base_dir`."""
    src = str(source) if source is not None else None
    root = Node("", data, src, Path(base_dir).expanduser().absolute())
    root.check_keys({*SECTIONS, "rules"})
    warnings: list[str] = []
    values: dict[str, Any] = {}
    for name, cls in SECTIONS.items():
        node = root.section(name)
        build = _BUILDERS.get(name)
        values[name] = build(node, warnings) if build is not None else cls(**_read(node, cls))
    rules = root.raw("rules", None)
    if rules is not None and not isinstance(rules, Mapping):
        raise root.error("rules", f"expected a mapping, got {describe_value(rules)}")
    return BridgeConfig(**values, rules=rules, source=Path(src) if src is not None else None,
                        warnings=tuple(warnings))


def check_folders(config: BridgeConfig) -> None:
    """Without creating anything: each folder is a folder or can become one, and processing is on inbound's
    filesystem (a claim is an atomic rename); a missing folder is judged by the nearest folder above it."""
    source = str(config.source) if config.source else None
    shared = [("outbound.shared_state", config.outbound.shared_state)] if config.outbound.shared_state else []
    for key, folder in [*zip(_FOLDER_KEYS, config.folders, strict=True), *shared]:
        existing = _nearest_existing(folder)
        if not existing.is_dir():
            raise ConfigError(key, f"{existing} exists and is not a folder", source)
    try:
        same_fs = (os.stat(_nearest_existing(config.watch.inbound)).st_dev
                   == os.stat(_nearest_existing(config.spool.processing)).st_dev)
    except OSError as exc:
        raise StorageError(f"cannot stat {config.spool.processing}: {exc.strerror or exc}") from exc
    if not same_fs:
        raise ConfigError(
            "spool.processing",
            f"{config.spool.processing} must be on the same filesystem as watch.inbound {config.watch.inbound}"
            " (a claim is an atomic rename)",
            source,
        )


_FOLDER_KEYS = ("watch.inbound", "spool.processing", "spool.archive", "spool.quarantine", "state.dir",
                "outbound.folder")  # in the order of BridgeConfig.folders


def _nearest_existing(path: Path) -> Path:
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


# ----------------------------------------------------------------------------------------------------- sections


def _read(node: Node, cls: type) -> dict[str, Any]:
    """The declared settings of a section; unknown keys (other than its deprecated ones) are errors."""
    node.check_keys({key for key, _, _ in settings_of(cls)} | set(DEPRECATED.get(node.key, {})))
    return read_settings(node, cls)


def _broker(node: Node, warnings: list[str]) -> BrokerConfig:
    values = _read(node, BrokerConfig)
    if not values["urls"]:
        raise node.error("urls", "needs at least one URL")
    for i, url in enumerate(values["urls"]):
        if not _URL.fullmatch(url):
            raise node.error(f"urls[{i}]", f"{redact_url(url)!r} is not an amqp:// or amqps:// URL")
    return BrokerConfig(**values, tls=_tls(node))


def _tls(s: Node) -> TlsConfig | None:
    raw = s.raw("tls", None)
    if raw is None or raw is False:
        return None
    if raw is True:
        return TlsConfig()
    t = s.section("tls")
    tls = TlsConfig(**_read(t, TlsConfig))
    if (tls.cert_file is None) != (tls.key_file is None):
        raise t.error(
            "key_file" if tls.key_file is None else "cert_file", "cert_file and key_file go together"
        )
    if tls.external_auth and tls.cert_file is None:
        raise t.error("external_auth", "needs cert_file and key_file: the client certificate is the identity")
    return tls


def _spool(node: Node, warnings: list[str]) -> SpoolConfig:
    spool = SpoolConfig(**_read(node, SpoolConfig))
    if spool.encryption_keys_old and spool.encryption_key is None:
        raise node.error("encryption_keys_old", "needs encryption_key (the current key) as well")
    return spool


def _flows(node: Node, warnings: list[str]) -> FlowsConfig:
    folders = node.raw("definitions")
    if isinstance(folders, str):  # one folder alone, as configs wrote it before the definitions shipped inside
        node = Node(node.key, {**node.data, "definitions": [folders]}, node.source, node.base_dir)
    return FlowsConfig(**_read(node, FlowsConfig))


def _checks(node: Node, warnings: list[str]) -> ChecksConfig:
    node.check_keys(set(DEFAULT_SEVERITIES))
    return ChecksConfig({name: node.choice(name, default, SEVERITIES)  # type: ignore[misc]
                         for name, default in DEFAULT_SEVERITIES.items()})


def _inbound(node: Node, warnings: list[str]) -> InboundConfig:
    values = _read(node, InboundConfig)
    old = _deprecated(node, warnings)
    if old:
        values["workers"] = old["build_workers"] if old["worker_process"] else 0
    return InboundConfig(**values)


def _outbound(node: Node, warnings: list[str]) -> OutboundConfig:
    values = _read(node, OutboundConfig)
    problem = name_pattern_problem(values["name_pattern"])
    if problem:
        raise node.error("name_pattern", problem)
    if values["shared_state"] is not None and not values["single_active_consumer"]:
        raise node.error("shared_state", "a pair needs single_active_consumer: true as well (two active consumers "
                         "would split a source file between them)")
    old = _deprecated(node, warnings)
    if old:
        values["workers"] = old["verify_workers"]
    return OutboundConfig(**values)


def _deprecated(node: Node, warnings: list[str]) -> dict[str, Any]:
    """The section's deprecated keys read with their defaults (empty when it uses none); adds the warning. Giving
    both an old key and the key replacing it is an error: which one wins would be a guess."""
    declared = DEPRECATED[node.key]
    used = [name for name in declared if name in node.data]
    if not used:
        return {}
    replacement = declared[used[0]][0].deprecated
    if replacement.rsplit(".", 1)[1] in node.data:
        raise node.error(used[0], f"is replaced by {replacement}: give only {replacement}")
    values = {name: node.setting(name, spec, default) for name, (spec, default) in declared.items()}
    warnings.append(f"{', '.join(node.dotted(name) for name in used)}: deprecated, write {replacement} instead "
                    "(the number of worker processes; 0 = in the daemon's process)")
    return values


_BUILDERS = {"broker": _broker, "spool": _spool, "flows": _flows, "checks": _checks, "inbound": _inbound,
             "outbound": _outbound}


# ------------------------------------------------------------------------------------------------------ machinery


class _StrictLoader(yaml.SafeLoader):
    """SafeLoader that rejects duplicate keys (PyYAML silently keeps the last one)."""


def _construct_mapping(loader: _StrictLoader, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
    loader.flatten_mapping(node)
    result: dict[Any, Any] = {}
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=deep)
        try:
            duplicate = key in result
        except TypeError as exc:
            raise yaml.constructor.ConstructorError(
                None, None, f"unhashable key {key!r}", key_node.start_mark
            ) from exc
        if duplicate:
            raise yaml.constructor.ConstructorError(None, None, f"duplicate key {key!r}", key_node.start_mark)
        result[key] = loader.construct_object(value_node, deep=deep)
    return result


_StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)
