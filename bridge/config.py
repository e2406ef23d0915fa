"""The bridge's configuration: one YAML file -> frozen dataclasses, validated once at load.

Every error is a `ConfigError` naming the dotted key (`broker.heartbeat`) and the file, so a typo fails the start
with one clear line instead of a surprise at 3 a.m. Unknown keys are errors (a misspelt key would otherwise silently
fall back to its default). Relative paths resolve against the folder of the config file, not the working directory,
so the daemon behaves the same whoever starts it.

    config = load_config("config/bridge.yaml")
    ensure_folders(config)
"""

from __future__ import annotations

import math
import os
import re
import string
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from difflib import get_close_matches
from pathlib import Path
from typing import Any

import yaml

from bridge.adapters.spool import make_folders
from bridge.dtn.checks import DEFAULT_SEVERITIES, SEVERITIES, Severity
from bridge.dtn.formats import CONTROL
from bridge.errors import ConfigError, StorageError
from bridge.flowfile import DEFAULT_MAX_LINE_BYTES
from bridge.logs import redact_url

__all__ = [
    "LEDGER_FILE_NAME",
    "NAME_PATTERN_FIELDS",
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
    "ensure_folders",
    "load_config",
    "parse_config",
]

LEDGER_FILE_NAME = "ledger.sqlite3"
DEFAULT_IGNORE = ("*.tmp", "*.part", ".*", "~*", "*.filepart")
#: Placeholders `outbound.name_pattern` may use (the outbound writer supplies them all).
NAME_PATTERN_FIELDS = frozenset(
    {"flow", "version", "from_participant", "from_role", "to_participant", "to_role", "file_identifier"}
)

#: The longest outbound file name (UTF-8 bytes): room below NAME_MAX (255) for a `.N` suffix and the hidden
#: `.<name>.<random>.tmp` it is written under first.
MAX_FILE_NAME_BYTES = 200
# The longest text each placeholder can stand for once the envelope was checked (bridge/events/envelope.py).
_PLACEHOLDER_SIZES = {"flow": 5, "version": 3, "from_participant": 4, "from_role": 1, "to_participant": 4,
                      "to_role": 1, "file_identifier": 10}
_MPID = re.compile(r"[A-Z0-9]{4}")
_ROLE = re.compile(r"[A-Z0-9]")
_MAX_AGE = re.compile(r"[1-9][0-9]*[YMDhms]")  # RabbitMQ stream x-max-age
_URL = re.compile(r"amqps?://\S+")


@dataclass(frozen=True, slots=True)
class ParticipantConfig:
    """The bridge's own market participant: MPID (4 characters) and market role code."""

    id: str = "DTNB"
    role: str = "X"


@dataclass(frozen=True, slots=True)
class TlsConfig:
    """TLS towards the broker; `None` files mean the system defaults (see docs/security.md).

    `external_auth`: log in with the client certificate (RabbitMQ's EXTERNAL mechanism) instead of a password.
    """

    ca_file: Path | None = None
    cert_file: Path | None = None
    key_file: Path | None = None
    server_hostname: str | None = None
    verify: bool = True
    external_auth: bool = False


@dataclass(frozen=True, slots=True)
class BrokerConfig:
    """RabbitMQ: the URLs are tried in order (a cluster), publisher confirms bounded by `confirm_window`."""

    urls: tuple[str, ...] = field(
        default=("amqp://guest:guest@127.0.0.1:5672/",), repr=False
    )  # hold passwords
    heartbeat: int = 30
    confirm_window: int = 1000
    connect_timeout: float = 10.0
    stream_max_age: str = "30D"
    tls: TlsConfig | None = None
    topology_suffix: str = ""  # appended to every exchange and queue name (tests, side-by-side installations)

    @property
    def redacted_urls(self) -> tuple[str, ...]:
        """The URLs with passwords replaced by `***`, for logs."""
        return tuple(redact_url(url) for url in self.urls)


@dataclass(frozen=True, slots=True)
class WatchConfig:
    """The DTN gateway's inbound drop folder and how to notice complete files in it."""

    inbound: Path
    mode: str = "inotify"
    rescan_seconds: float = 30.0
    stable_seconds: float = 2.0
    trust_renames: bool = True
    poll_interval: float = 1.0
    ignore: tuple[str, ...] = DEFAULT_IGNORE


@dataclass(frozen=True, slots=True)
class SpoolConfig:
    """Where claimed files wait (processing), end (archive) or are set aside with a report (quarantine)."""

    processing: Path
    archive: Path
    quarantine: Path
    file_mode: int = 0o640
    dir_mode: int = 0o750
    encryption_key: Path | None = None  # AES-256 key file (mode 0600): archive and quarantine encrypted at rest
    encryption_keys_old: tuple[Path, ...] = ()  # earlier keys, only for reading files written before a rotation


@dataclass(frozen=True, slots=True)
class StateConfig:
    """The state folder: the ledger and, when no key is configured, the development signing key."""

    dir: Path

    @property
    def ledger_path(self) -> Path:
        """The SQLite ledger of files."""
        return self.dir / LEDGER_FILE_NAME


@dataclass(frozen=True, slots=True)
class SigningConfig:
    """`key` None means: generate a development key into the state folder on first run."""

    key: Path | None = None
    trust: Path | None = None
    ca_bundle: Path | None = None


@dataclass(frozen=True, slots=True)
class FlowsConfig:
    """Flow definitions folder; `strict` enforces the DTC ranges instead of the lenient ones."""

    definitions: Path
    strict: bool = False


@dataclass(frozen=True, slots=True)
class ChecksConfig:
    """The severity of each named check flow definitions refer to (bridge/dtn/checks.py): error, warn or off."""

    severities: Mapping[str, Severity] = field(default_factory=lambda: dict(DEFAULT_SEVERITIES))


@dataclass(frozen=True, slots=True)
class InboundConfig:
    """Inbound policy: what to do with a file whose content was already published, and size limits."""

    duplicates: str = "skip"
    max_file_bytes: int = 1073741824
    max_line_bytes: int = DEFAULT_MAX_LINE_BYTES  # a longer line is a defect, and is never held in memory whole
    shadow: bool = False  # parse, validate and report, but publish nothing (running beside a current DTN setup)
    worker_process: bool = True  # build events in worker processes (other cores); false: all in one process
    build_workers: int = 2  # how many, when worker_process: each builds and signs every n-th run of instances


@dataclass(frozen=True, slots=True)
class OutboundConfig:
    """Events -> DTN files for the gateway's outbound folder."""

    folder: Path
    batch_size: int = 1000
    batch_seconds: float = 30.0
    file_mode: int = 0o640
    name_pattern: str = "{flow}{version}_{from_participant}_{file_identifier}.usr"
    prefetch: int = 2000  # twice batch_size: the next file's events are verified while one is written
    verify_workers: int = 2  # worker processes that verify and govern events (other cores); 0: in the daemon


@dataclass(frozen=True, slots=True)
class LogConfig:
    """Log level and format (`auto`: console on a terminal, JSON otherwise)."""

    level: str = "info"
    format: str = "auto"


@dataclass(frozen=True, slots=True)
class MetricsConfig:
    """Prometheus endpoint; `port` None disables it."""

    port: int | None = None
    address: str = "127.0.0.1"


@dataclass(frozen=True, slots=True)
class BridgeConfig:
    """The whole configuration; `source` is the file it came from (None when built from a mapping)."""

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
    ctx = _Context(Path(base_dir).expanduser().absolute(), src)
    root = _Section(ctx, "", data)
    sections: dict[str, Callable[[_Section], Any]] = {
        "participant": _participant,
        "broker": _broker,
        "watch": _watch,
        "spool": _spool,
        "state": _state,
        "signing": _signing,
        "flows": _flows,
        "inbound": _inbound,
        "outbound": _outbound,
        "log": _log,
        "metrics": _metrics,
        "checks": _checks,
    }
    root.check_keys({*sections, "rules"})
    values = {name: build(root.section(name)) for name, build in sections.items()}
    rules = root.raw("rules", None)
    if rules is not None and not isinstance(rules, Mapping):
        raise root.error("rules", f"expected a mapping, got {describe_value(rules)}")
    return BridgeConfig(**values, rules=rules, source=Path(src) if src is not None else None)


def ensure_folders(config: BridgeConfig) -> tuple[Path, ...]:
    """Create the bridge's folders (parents too) with `spool.dir_mode`; existing folders are left as they are.

    `check_folders` runs first, so a refused configuration leaves no folder behind."""
    check_folders(config)
    for folder in config.folders:
        make_folders(folder, config.spool.dir_mode)
    return config.folders


def check_folders(config: BridgeConfig) -> None:
    """Without creating anything: each folder is a folder or can become one, and processing is on inbound's
    filesystem (a claim is an atomic rename); a missing folder is judged by the nearest folder above it."""
    source = str(config.source) if config.source else None
    for key, folder in zip(_FOLDER_KEYS, config.folders, strict=True):
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


def _participant(s: _Section) -> ParticipantConfig:
    s.check_keys({"id", "role"})
    return ParticipantConfig(
        id=s.string("id", "DTNB", pattern=_MPID, hint="an MPID: 4 upper-case letters or digits"),
        role=s.string("role", "X", pattern=_ROLE, hint="a market role code: 1 upper-case letter or digit"),
    )


def _broker(s: _Section) -> BrokerConfig:
    s.check_keys({"urls", "heartbeat", "confirm_window", "connect_timeout", "stream_max_age", "tls",
                  "topology_suffix"})
    urls = s.string_list("urls", ("amqp://guest:guest@127.0.0.1:5672/",))
    if not urls:
        raise s.error("urls", "needs at least one URL")
    for i, url in enumerate(urls):
        if not _URL.fullmatch(url):
            raise s.error(f"urls[{i}]", f"{redact_url(url)!r} is not an amqp:// or amqps:// URL")
    return BrokerConfig(
        urls=urls,
        heartbeat=s.integer("heartbeat", 30, minimum=1),  # 0 would turn heartbeats off: a dead link unseen
        confirm_window=s.integer("confirm_window", 1000, minimum=1),
        connect_timeout=s.number("connect_timeout", 10.0, positive=True),
        stream_max_age=s.string(
            "stream_max_age",
            "30D",
            pattern=_MAX_AGE,
            hint="a RabbitMQ max-age: a number and one of Y M D h m s",
        ),
        tls=_tls(s),
        topology_suffix=s.string("topology_suffix", "", pattern=re.compile(r"[A-Za-z0-9._-]*"),
                                 hint="letters, digits, '.', '_' or '-'"),
    )


def _tls(s: _Section) -> TlsConfig | None:
    raw = s.raw("tls", None)
    if raw is None or raw is False:
        return None
    if raw is True:
        return TlsConfig()
    t = s.section("tls")
    t.check_keys({"ca_file", "cert_file", "key_file", "server_hostname", "verify", "external_auth"})
    tls = TlsConfig(
        ca_file=t.path("ca_file", None),
        cert_file=t.path("cert_file", None),
        key_file=t.path("key_file", None),
        server_hostname=t.optional_string("server_hostname"),
        verify=t.boolean("verify", True),
        external_auth=t.boolean("external_auth", False),
    )
    if (tls.cert_file is None) != (tls.key_file is None):
        raise t.error(
            "key_file" if tls.key_file is None else "cert_file", "cert_file and key_file go together"
        )
    if tls.external_auth and tls.cert_file is None:
        raise t.error("external_auth", "needs cert_file and key_file: the client certificate is the identity")
    return tls


def _watch(s: _Section) -> WatchConfig:
    s.check_keys({"inbound", "mode", "rescan_seconds", "stable_seconds", "trust_renames", "poll_interval", "ignore"})
    return WatchConfig(
        inbound=s.required_path("inbound", "var/dtn/inbound"),
        mode=s.choice("mode", "inotify", ("inotify", "polling")),
        rescan_seconds=s.number("rescan_seconds", 30.0, positive=True),
        stable_seconds=s.number("stable_seconds", 2.0, minimum=0.0),
        trust_renames=s.boolean("trust_renames", True),
        poll_interval=s.number("poll_interval", 1.0, positive=True),
        ignore=s.string_list("ignore", DEFAULT_IGNORE),
    )


def _spool(s: _Section) -> SpoolConfig:
    s.check_keys({"processing", "archive", "quarantine", "file_mode", "dir_mode", "encryption_key",
                  "encryption_keys_old"})
    key = s.path("encryption_key", None)
    old = s.path_list("encryption_keys_old")
    if old and key is None:
        raise s.error("encryption_keys_old", "needs encryption_key (the current key) as well")
    return SpoolConfig(
        processing=s.required_path("processing", "var/processing"),
        archive=s.required_path("archive", "var/archive"),
        quarantine=s.required_path("quarantine", "var/quarantine"),
        file_mode=s.mode("file_mode", 0o640),
        dir_mode=s.mode("dir_mode", 0o750),
        encryption_key=key,
        encryption_keys_old=old,
    )


def _state(s: _Section) -> StateConfig:
    s.check_keys({"dir"})
    return StateConfig(dir=s.required_path("dir", "var/state"))


def _signing(s: _Section) -> SigningConfig:
    s.check_keys({"key", "trust", "ca_bundle"})
    return SigningConfig(
        key=s.path("key", None), trust=s.path("trust", None), ca_bundle=s.path("ca_bundle", None)
    )


def _flows(s: _Section) -> FlowsConfig:
    s.check_keys({"definitions", "strict"})
    return FlowsConfig(
        definitions=s.required_path("definitions", "../flow_definitions"), strict=s.boolean("strict", False)
    )


def _checks(s: _Section) -> ChecksConfig:
    s.check_keys(set(DEFAULT_SEVERITIES))
    return ChecksConfig({name: s.choice(name, default, SEVERITIES)  # type: ignore[misc]
                         for name, default in DEFAULT_SEVERITIES.items()})


def _inbound(s: _Section) -> InboundConfig:
    s.check_keys({"duplicates", "max_file_bytes", "max_line_bytes", "shadow", "worker_process", "build_workers"})
    return InboundConfig(
        duplicates=s.choice("duplicates", "skip", ("skip", "republish")),
        max_file_bytes=s.integer("max_file_bytes", 1073741824, minimum=1),
        max_line_bytes=s.integer("max_line_bytes", DEFAULT_MAX_LINE_BYTES, minimum=1024),
        shadow=s.boolean("shadow", False),
        worker_process=s.boolean("worker_process", True),
        build_workers=s.integer("build_workers", 2, minimum=1, maximum=16),
    )


def _outbound(s: _Section) -> OutboundConfig:
    s.check_keys({"folder", "batch_size", "batch_seconds", "file_mode", "name_pattern", "prefetch", "verify_workers"})
    pattern = s.string("name_pattern", "{flow}{version}_{from_participant}_{file_identifier}.usr")
    problem = _name_pattern_problem(pattern)
    if problem:
        raise s.error("name_pattern", problem)
    return OutboundConfig(
        folder=s.required_path("folder", "var/dtn/outbound"),
        batch_size=s.integer("batch_size", 1000, minimum=1),
        batch_seconds=s.number("batch_seconds", 30.0, positive=True),
        file_mode=s.mode("file_mode", 0o640),
        name_pattern=pattern,
        prefetch=s.integer("prefetch", 2000, minimum=1),
        verify_workers=s.integer("verify_workers", 2, minimum=0),
    )


def _log(s: _Section) -> LogConfig:
    s.check_keys({"level", "format"})
    return LogConfig(
        level=s.choice("level", "info", ("debug", "info", "warning", "error", "critical"), fold_case=True),
        format=s.choice("format", "auto", ("auto", "json", "console")),
    )


def _metrics(s: _Section) -> MetricsConfig:
    s.check_keys({"port", "address"})
    port = s.raw("port", None)
    return MetricsConfig(
        port=None if port is None else s.integer("port", 0, minimum=1, maximum=65535),
        address=s.string("address", "127.0.0.1"),
    )


def _name_pattern_problem(pattern: str) -> str | None:
    """Why `pattern` cannot name outbound files, or None."""
    try:
        parsed = list(string.Formatter().parse(pattern))
    except ValueError as exc:
        return f"{pattern!r} is not a format string: {exc}"
    names = {name for _, name, _, _ in parsed if name is not None}
    unknown = sorted(n for n in names if n not in NAME_PATTERN_FIELDS)
    if unknown:
        return f"unknown placeholder {{{unknown[0]}}}; allowed: {', '.join(sorted(NAME_PATTERN_FIELDS))}"
    if "file_identifier" not in names:
        return "must contain {file_identifier}, or two files would get the same name"
    try:
        samples = [pattern.format(**{n: "X" * size for n, size in _PLACEHOLDER_SIZES.items()}),
                   pattern.format(**{n: "X" for n in NAME_PATTERN_FIELDS})]
    except (ValueError, IndexError, KeyError) as exc:
        return f"{pattern!r} cannot be rendered: {exc}"
    for sample in samples:
        problem = plain_name_problem(sample)
        if problem:
            return f"renders {sample[:60]!r}, which {problem}"
    return None


def plain_name_problem(name: str) -> str | None:
    """Why `name` is not one plain, visible path part of bounded length (an outbound file name), or None."""
    if "/" in name or CONTROL.search(name):
        return "is not one plain file name (it holds '/' or a control character)"
    if name.startswith((".", "~")):
        return "starts with '.' or '~' (a hidden name, which gateways ignore)"
    if len(name.encode()) > MAX_FILE_NAME_BYTES:
        return f"is longer than {MAX_FILE_NAME_BYTES} bytes"
    return None


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


@dataclass(frozen=True, slots=True)
class _Context:
    base_dir: Path
    source: str | None


class _Section:
    """One mapping of the config, with its dotted prefix: typed getters that raise `ConfigError` on the key."""

    __slots__ = ("_ctx", "_data", "_prefix")

    def __init__(self, ctx: _Context, prefix: str, data: object) -> None:
        self._ctx = ctx
        self._prefix = prefix
        if data is None:
            data = {}
        if not isinstance(data, Mapping):
            raise ConfigError(prefix or "(root)", f"expected a mapping, got {describe_value(data)}", ctx.source)
        for key in data:
            if not isinstance(key, str):
                raise ConfigError(self._key(str(key)), "keys must be strings", ctx.source)
        self._data: Mapping[str, object] = data

    def _key(self, key: str) -> str:
        if not self._prefix:
            return key
        return f"{self._prefix}{key}" if key.startswith("[") else f"{self._prefix}.{key}"

    def error(self, key: str, message: str) -> ConfigError:
        """A ConfigError for `key` of this section."""
        return ConfigError(self._key(key), message, self._ctx.source)

    def check_keys(self, known: Mapping[str, object] | set[str]) -> None:
        """Unknown keys are errors, with a did-you-mean."""
        for key in self._data:
            if key not in known:
                close = get_close_matches(key, list(known), n=1)
                hint = (
                    f"; did you mean {close[0]!r}?" if close else f"; known keys: {', '.join(sorted(known))}"
                )
                raise self.error(key, f"unknown key{hint}")

    def raw(self, key: str, default: object) -> object:
        return self._data.get(key, default)

    def section(self, key: str) -> _Section:
        return _Section(self._ctx, self._key(key), self._data.get(key))

    def string(
        self, key: str, default: str, *, pattern: re.Pattern[str] | None = None, hint: str = ""
    ) -> str:
        value = self._data.get(key, default)
        if not isinstance(value, str):
            raise self.error(key, f"expected a string, got {describe_value(value)}")
        if pattern is not None and not pattern.fullmatch(value):
            raise self.error(key, f"{value!r} is not {hint}" if hint else f"{value!r} is not valid")
        return value

    def optional_string(self, key: str) -> str | None:
        value = self._data.get(key)
        if value is None:
            return None
        if not isinstance(value, str):
            raise self.error(key, f"expected a string or null, got {describe_value(value)}")
        return value

    def choice(self, key: str, default: str, choices: tuple[str, ...], *, fold_case: bool = False) -> str:
        value = self.string(key, default)
        folded = value.lower() if fold_case else value
        if folded not in choices:
            raise self.error(key, f"{value!r} is not one of: {', '.join(choices)}")
        return folded

    def string_list(self, key: str, default: tuple[str, ...]) -> tuple[str, ...]:
        value = self._data.get(key, default)
        if not isinstance(value, (list, tuple)):
            raise self.error(key, f"expected a list of strings, got {describe_value(value)}")
        for i, item in enumerate(value):
            if not isinstance(item, str):
                raise self.error(f"{key}[{i}]", f"expected a string, got {describe_value(item)}")
        return tuple(value)

    def boolean(self, key: str, default: bool) -> bool:
        value = self._data.get(key, default)
        if not isinstance(value, bool):
            raise self.error(key, f"expected true or false, got {describe_value(value)}")
        return value

    def integer(
        self, key: str, default: int, *, minimum: int | None = None, maximum: int | None = None
    ) -> int:
        value = self._data.get(key, default)
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.error(key, f"expected an integer, got {describe_value(value)}")
        _check_range(self, key, value, minimum, maximum)
        return value

    def number(
        self, key: str, default: float, *, minimum: float | None = None, positive: bool = False
    ) -> float:
        value = self._data.get(key, default)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise self.error(key, f"expected a number, got {describe_value(value)}")
        if not math.isfinite(value):
            raise self.error(key, "must be a finite number")
        if positive and value <= 0:
            raise self.error(key, f"must be greater than 0, got {value}")
        _check_range(self, key, value, minimum, None)
        return float(value)

    def mode(self, key: str, default: int) -> int:
        """A permission mode: an int from YAML `0640`, or a string `"0640"` / `"0o640"` / `"640"` (octal)."""
        value = self._data.get(key, default)
        if isinstance(value, str):
            text = value.strip().lower().removeprefix("0o")
            if not re.fullmatch(r"[0-7]{1,4}", text):
                raise self.error(key, f"{value!r} is not an octal permission mode like '0640'")
            value = int(text, 8)
        elif isinstance(value, bool) or not isinstance(value, int):
            raise self.error(key, f"expected an octal permission mode like '0640', got {describe_value(value)}")
        if not 0 <= value <= 0o777:
            raise self.error(
                key, f"{value} is out of range for a permission mode; write it as octal, e.g. '0640'"
            )
        return value

    def path(self, key: str, default: str | None) -> Path | None:
        value = self._data.get(key, default)
        if value is None:
            return None
        if not isinstance(value, str) or not value.strip():
            raise self.error(key, f"expected a path (a non-empty string) or null, got {describe_value(value)}")
        return self._resolve(value)

    def path_list(self, key: str) -> tuple[Path, ...]:
        """A list of paths (default empty); each resolves like `path`."""
        value = self._data.get(key, [])
        if value is None:
            return ()
        if not isinstance(value, (list, tuple)):
            raise self.error(key, f"expected a list of paths, got {describe_value(value)}")
        for i, item in enumerate(value):
            if not isinstance(item, str) or not item.strip():
                raise self.error(f"{key}[{i}]", f"expected a path (a non-empty string), got {describe_value(item)}")
        return tuple(self._resolve(item) for item in value)

    def required_path(self, key: str, default: str) -> Path:
        value = self._data.get(key, default)
        if not isinstance(value, str) or not value.strip():
            raise self.error(key, f"expected a path (a non-empty string), got {describe_value(value)}")
        return self._resolve(value)

    def _resolve(self, value: str) -> Path:
        path = Path(value).expanduser()
        if not path.is_absolute():
            path = self._ctx.base_dir / path
        return Path(os.path.normpath(path))


def _check_range(s: _Section, key: str, value: float, minimum: float | None, maximum: float | None) -> None:
    if minimum is not None and value < minimum:
        raise s.error(key, f"must be at least {minimum}, got {value}")
    if maximum is not None and value > maximum:
        raise s.error(key, f"must be at most {maximum}, got {value}")


def describe_value(value: object) -> str:
    """How a YAML value reads to a person, in the error messages of the configuration and the rules."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return f"a boolean ({str(value).lower()})"
    if isinstance(value, (int, float)):
        return f"a number ({value})"
    if isinstance(value, str):
        return f"a string ({value!r})"
    if isinstance(value, Mapping):
        return "a mapping"
    if isinstance(value, (list, tuple)):
        return "a list"
    return type(value).__name__
