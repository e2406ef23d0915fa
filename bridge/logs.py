"""The structlog chain: one event per line, JSON off a terminal, readable on one; secrets and meter data kept out.

Redaction is a processor, so it applies to every log line whoever wrote it: values under keys that can carry key
material or personal data (meter readings, addresses, whole events) are replaced unless the level is debug. Defect
messages quote the offending value, so log lines name a defect by its location and rule only (`Defect.locate`).
"""

from __future__ import annotations

import logging
import sys
from collections.abc import MutableMapping
from typing import Any

import structlog

SECRET_KEYS = frozenset({"key", "private_key", "password", "secret", "signature", "token", "jwk"})
PERSONAL_KEYS = frozenset({"data", "cloudevent", "body", "values", "line", "mpan", "mpan_core", "subject", "address"})
_LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING, "error": logging.ERROR,
           "critical": logging.CRITICAL}


def redact(_logger: Any, method: str, event_dict: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """Replace secrets always, and personal data above debug."""
    for key in list(event_dict):
        lowered = key.lower()
        if lowered in SECRET_KEYS or lowered.endswith(("_key", "_password", "_secret")):
            event_dict[key] = "[redacted]"
        elif method != "debug" and lowered in PERSONAL_KEYS:
            event_dict[key] = "[personal data: debug only]"
    return event_dict


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
