"""Broker URLs and connection settings -> pika connection parameters, checked before anything connects.

The URL itself never appears in an error or a log line (it may hold a password): each endpoint carries a label,
host:port/vhost, and `describe` turns a pika exception into a short credential-free text.
"""

from __future__ import annotations

import ssl
from collections.abc import Sequence
from dataclasses import dataclass
from urllib.parse import parse_qs, quote, urlsplit

import pika
import pika.credentials
import pika.exceptions

from bridge.errors import ConfigError


@dataclass(frozen=True, slots=True)
class Endpoint:
    """Connection parameters of one URL plus a label safe to log."""

    params: pika.URLParameters
    label: str


def parse_endpoint(
    index: int,
    url: str,
    *,
    heartbeat: int,
    connect_timeout: float,
    ssl_context: ssl.SSLContext | None,
    client_name: str,
    external_auth: bool = False,
) -> Endpoint:
    """Parse one broker URL; the URL itself never appears in errors (it may hold a password).

    `external_auth` logs in with the TLS client certificate (SASL EXTERNAL) instead of the URL's user/password.
    """
    key = f"broker.urls[{index}]"
    if not url.lower().startswith(("amqp://", "amqps://")):
        raise ConfigError(key, "must start with amqp:// or amqps://")
    try:
        # pika would build a TLS context of its own from ssl_options (unverified with some values): refused before
        # pika reads it
        if "ssl_options" in parse_qs(urlsplit(url).query, keep_blank_values=True):
            raise ConfigError(key, "the URL parameter ssl_options is not accepted: it would replace the bridge's "
                              "verified TLS context; configure TLS under broker.tls")
        params = pika.URLParameters(url)
    except ConfigError:
        raise
    except Exception as exc:  # noqa: BLE001 (pika raises ValueError/TypeError/KeyError, maybe more, for bad URLs)
        raise ConfigError(key, f"not a valid amqp:// or amqps:// URL ({type(exc).__name__})") from None
    params.heartbeat = heartbeat  # 0: pika proposes none in the tune, so the connection has no heartbeats
    params.socket_timeout = connect_timeout
    params.stack_timeout = connect_timeout
    params.connection_attempts = 1
    params.client_properties = {"connection_name": client_name, "product": "dtn-bridge"}
    if ssl_context is not None:
        if params.ssl_options is None:
            raise ConfigError(key, "a TLS context was given but the URL is amqp://, use amqps://")
        params.ssl_options = pika.SSLOptions(ssl_context, server_hostname=params.host)
    if external_auth:
        if ssl_context is None:
            raise ConfigError(key, "EXTERNAL authentication needs TLS with a client certificate (a TLS context)")
        params.credentials = pika.credentials.ExternalCredentials()
    vhost = "" if params.virtual_host == "/" else "/" + quote(params.virtual_host, safe="")
    return Endpoint(params, f"{params.host}:{params.port}{vhost}")


def parse_endpoints(
    urls: Sequence[str],
    *,
    heartbeat: int,
    connect_timeout: float,
    ssl_context: ssl.SSLContext | None,
    client_name: str,
    external_auth: bool = False,
) -> list[Endpoint]:
    """Every URL parsed and every connection setting checked, before anything connects."""
    if isinstance(urls, str) or not urls:
        raise ConfigError("broker.urls", "give a non-empty list of amqp:// or amqps:// URLs")
    if heartbeat < 0:
        raise ConfigError("broker.heartbeat", "must be 0 (no heartbeats) or a number of seconds")
    if connect_timeout <= 0:
        raise ConfigError("broker.connect_timeout", "must be positive")
    return [
        parse_endpoint(i, url, heartbeat=heartbeat, connect_timeout=connect_timeout, ssl_context=ssl_context,
                  client_name=client_name, external_auth=external_auth)
        for i, url in enumerate(urls)
    ]


def broker_endpoint_labels(
    urls: Sequence[str],
    *,
    heartbeat: int,
    connect_timeout: float,
    ssl_options: ssl.SSLContext | None = None,
    external_auth: bool = False,
) -> list[str]:
    """The checks a publisher or consumer runs on its URLs and settings, without connecting (check-config, start-up):
    a ConfigError naming `broker.urls[i]` or the setting; else each endpoint as host:port/vhost (no credentials)."""
    return [endpoint.label for endpoint in parse_endpoints(urls, heartbeat=heartbeat, connect_timeout=connect_timeout,
                                                      ssl_context=ssl_options, client_name="dtn-bridge-check",
                                                      external_auth=external_auth)]


def describe(exc: BaseException) -> str:
    """A short, credential-free description of a pika exception."""
    # pika wraps connection failures (refused socket, TLS verification, login) in workflow exceptions whose
    # text is just their class name: describe the innermost cause, which says what went wrong.
    for _ in range(5):
        inner = getattr(exc, "exceptions", None) or (getattr(exc, "exception", None),)
        if not isinstance(inner[-1], BaseException):
            break
        exc = inner[-1]
    if isinstance(exc, (pika.exceptions.ConnectionClosed, pika.exceptions.ChannelClosed)):
        return f"{exc.reply_code} {exc.reply_text}"
    text = str(exc) or type(exc).__name__
    return f"{type(exc).__name__}: {text}" if type(exc).__name__ not in text else text
