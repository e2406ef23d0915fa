"""The structlog chain: one event per line, JSON off a terminal, readable on one; secrets and meter data kept out.

Redaction is a processor, so it applies to every log line whoever wrote it: values under keys that can carry key
material or personal data (meter readings, addresses, whole events) are replaced unless the level is debug. Defect
messages quote the offending value, so log lines name a defect by its location and rule only (`Defect.locate`).
"""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import MutableMapping
from typing import Any
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


def configure_logging(level: str = "info", fmt: str = "auto") -> None:
    """Set up structlog once, at start (the composition root calls this)."""
    console = fmt == "console" or (fmt == "auto" and sys.stderr.isatty())
    renderer: Any = structlog.dev.ConsoleRenderer() if console else structlog.processors.JSONRenderer()
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            redact,
            structlog.processors.format_exc_info if not console else structlog.dev.set_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(_LEVELS.get(level, logging.INFO)),
        logger_factory=_stderr_logger,
        cache_logger_on_first_use=False,
    )
