"""The structlog chain: one event per line, JSON off a terminal, readable on one; secrets and meter data kept out.

Redaction is a processor, so it applies to every log line whoever wrote it: values under keys that can carry key
material or personal data (meter readings, addresses, whole events) are replaced unless the level is debug. Defect
messages quote the offending value, so log lines name a defect by its location and rule only (`Defect.locate`).

The standard library's logging (pika, the RabbitMQ adapter) goes through the same processors (structlog's
ProcessorFormatter on the root logger), so every line is one JSON object and `journalctl -o cat | jq` reads them
all. Under systemd each line is led by its sd-daemon(3) priority (`<4>` a warning) for `journalctl -p`.
"""

from __future__ import annotations

import io
import logging
import os
import re
import sys
from collections.abc import Callable, Mapping, MutableMapping
from typing import Any, TextIO
from urllib.parse import urlsplit, urlunsplit

import structlog

SECRET_KEYS = frozenset({"key", "private_key", "password", "secret", "signature", "token", "jwk"})
PERSONAL_KEYS = frozenset({"data", "cloudevent", "body", "values", "line", "mpan", "mpan_core", "subject", "address"})
_URL_IN_TEXT = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://\S+")
_LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING, "error": logging.ERROR,
           "critical": logging.CRITICAL}


def redact(_logger: Any, method: str, event_dict: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """Replace secrets always, and personal data above debug; hide the password of any URL in a text value."""
    for key in list(event_dict):
        lowered = key.lower()
        if lowered in SECRET_KEYS or lowered.endswith(("_key", "_password", "_secret")):
            event_dict[key] = "[redacted]"
        elif method != "debug" and lowered in PERSONAL_KEYS:
            event_dict[key] = "[personal data: debug only]"
        else:
            event_dict[key] = _redact_urls(event_dict[key])
    return event_dict


def redact_url(url: str) -> str:
    """`url` with its password replaced by `***`, for logs and output; parsed as a URL, so a password holding `@`
    or `:` is hidden whole. A URL whose credentials cannot be told apart (a `/`, `?` or `#` in the password, an
    unreadable port) is shown as its scheme only."""
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError for a port that is not a number
    except ValueError:
        return _opaque(url)
    userinfo, at, hostport = parts.netloc.rpartition("@")
    if not at:
        return _opaque(url) if "@" in url else url  # an '@' after the host: credentials urlsplit did not find
    user, colon, _ = userinfo.partition(":")
    if not colon:
        return url
    return urlunsplit(parts._replace(netloc=f"{user}:***@{hostport}"))


def _opaque(url: str) -> str:
    scheme, sep, _ = url.partition("://")
    return f"{scheme}://***" if sep and re.fullmatch(r"[A-Za-z][A-Za-z0-9+.-]*", scheme) else "***"


def _redact_urls(value: Any) -> Any:
    """URLs inside a text value, or inside the texts of a list or tuple, with their passwords hidden."""
    if isinstance(value, str):
        return _URL_IN_TEXT.sub(lambda match: redact_url(match.group()), value) if "://" in value else value
    if type(value) is list:
        return [_redact_urls(item) for item in value]
    if type(value) is tuple:
        return tuple(_redact_urls(item) for item in value)
    return value


def _stderr_logger(*_args: Any) -> structlog.PrintLogger:
    """A logger on the *current* sys.stderr (looked up per call, so a replaced stream is followed)."""
    return structlog.PrintLogger(file=sys.stderr)


#: sd-daemon(3) priority prefixes: journald files a line starting `<N>` under priority N (`journalctl -p warning`).
JOURNAL_PRIORITIES = {"debug": 7, "info": 6, "warning": 4, "error": 3, "critical": 2}
#: Third-party libraries log through the standard library; below warning they are chatty (pika writes half a dozen
#: INFO lines per connection), so they follow the bridge's level only at debug.
_LIBRARY_LOGGERS = ("pika",)
#: pika's connection workflow logs seven ERROR lines for one refused connection; the RabbitMQ adapter reports each
#: failed attempt itself, once, with its cause (`RabbitMQ unavailable (attempt N)...`): these show at debug only.
_CONNECT_NOISE = ("pika.adapters.utils", "pika.adapters.base_connection")


def journal_stream(environ: Mapping[str, str] | None = None, stream: TextIO | None = None) -> bool:
    """True when `stream` (stderr) is the journal's stream systemd connected (`$JOURNAL_STREAM` = its
    device:inode, as sd-daemon(3) says to check): a child that inherited the variable but not the stream is not."""
    value = (os.environ if environ is None else environ).get("JOURNAL_STREAM", "")
    device, sep, inode = value.partition(":")
    if not sep:
        return False
    try:
        details = os.fstat((sys.stderr if stream is None else stream).fileno())
        return (details.st_dev, details.st_ino) == (int(device), int(inode))
    except (OSError, ValueError, io.UnsupportedOperation, AttributeError):
        return False


def _prefixed(renderer: Callable[..., Any]) -> Callable[..., Any]:
    """`renderer` with each line led by its syslog priority (`<4>` for a warning), for the journal."""

    def render(logger: Any, method: str, event_dict: MutableMapping[str, Any]) -> str:
        level = str(event_dict.get("level", method)).lower()
        return f"<{JOURNAL_PRIORITIES.get(level, 6)}>{renderer(logger, method, event_dict)}"

    return render


class _StderrHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """A handler writing to the *current* sys.stderr, like `_stderr_logger`."""

    def __init__(self) -> None:
        super().__init__(sys.stderr)

    @property
    def stream(self) -> TextIO:
        return sys.stderr

    @stream.setter
    def stream(self, _value: TextIO) -> None:
        """StreamHandler sets it; the current sys.stderr is always used."""


def configure_logging(level: str = "info", fmt: str = "auto", *, journal: bool | None = None) -> None:
    """Set up structlog once, at start (the composition root and each worker process call this), and route the
    standard library's logging (pika, the RabbitMQ adapter) through the same processors: every line is one JSON
    object (or one console line), redacted alike. `journal` (default: stderr is systemd's journal stream) prefixes
    each line with its syslog priority."""
    console = fmt == "console" or (fmt == "auto" and sys.stderr.isatty())
    renderer: Any = structlog.dev.ConsoleRenderer() if console else structlog.processors.JSONRenderer()
    if journal if journal is not None else journal_stream():
        renderer = _prefixed(renderer)
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        redact,
    ]
    exceptions = structlog.processors.format_exc_info if not console else structlog.dev.set_exc_info
    numeric = _LEVELS.get(level, logging.INFO)
    structlog.configure(
        processors=[*shared, exceptions, renderer],
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        logger_factory=_stderr_logger,
        cache_logger_on_first_use=False,
    )
    handler = _StderrHandler()
    handler.setFormatter(structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=[*shared[:2], structlog.stdlib.add_logger_name, *shared[2:]],
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, exceptions, renderer]))
    root = logging.getLogger()
    for old in [h for h in root.handlers if isinstance(h, _StderrHandler)]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(numeric)
    debug = numeric <= logging.DEBUG
    for name in _LIBRARY_LOGGERS:
        logging.getLogger(name).setLevel(numeric if debug else max(numeric, logging.WARNING))
    for name in _CONNECT_NOISE:
        logging.getLogger(name).setLevel(numeric if debug else logging.CRITICAL)
    logging.captureWarnings(True)  # warnings.warn (deprecations of libraries) as JSON lines too
