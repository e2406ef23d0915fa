"""TLS towards RabbitMQ: one `ssl.SSLContext` built from `broker.tls`, verified by default, with mutual TLS.

Why it looks like this:

* Flow files carry personal data and the broker may sit on another host, so the link is encrypted and the broker
  authenticated (its certificate must chain to `ca_file`, or to the system CAs, and name the host we dialled).
  TLS 1.2 is the floor; TLS 1.3 is used whenever the broker offers it.
* With `cert_file`/`key_file` the bridge presents a client certificate (mutual TLS): the broker can refuse anyone
  without one signed by its CA. With `external_auth` the certificate *is* the identity (RabbitMQ's EXTERNAL SASL
  mechanism, plugin rabbitmq_auth_mechanism_ssl): no password in the URL or the config at all.
* `server_hostname` covers the broker reached by an address its certificate does not name (an IP, a tunnel, a load
  balancer): the context pins the name to verify and send as SNI, whatever host the URL has. pika passes the URL's
  host to `wrap_socket`; the context substitutes its pinned name there, so no other module needs to know.
* Only bridge/adapters/rabbitmq/ imports pika; this module hands it a plain `ssl.SSLContext` and a flag.

    options = broker_connection_options(config.broker)     # {} for plain AMQP
    publisher = RabbitPublisher(config.broker.urls, **options, ...)
"""

from __future__ import annotations

import logging
import os
import socket
import ssl
import stat
from pathlib import Path
from typing import Any, TypedDict

from bridge.config import BrokerConfig, TlsConfig
from bridge.errors import ConfigError

__all__ = ["BrokerContext", "BrokerTlsOptions", "broker_connection_options", "ssl_context_for"]

log = logging.getLogger(__name__)


class BrokerContext(ssl.SSLContext):
    """A client SSLContext that verifies (and sends as SNI) a pinned server name instead of the dialled host."""

    pinned_hostname: str | None = None

    def wrap_socket(
        self,
        sock: socket.socket,
        server_side: bool = False,
        do_handshake_on_connect: bool = True,
        suppress_ragged_eofs: bool = True,
        server_hostname: str | bytes | None = None,
        session: ssl.SSLSession | None = None,
    ) -> ssl.SSLSocket:
        return super().wrap_socket(
            sock,
            server_side=server_side,
            do_handshake_on_connect=do_handshake_on_connect,
            suppress_ragged_eofs=suppress_ragged_eofs,
            server_hostname=self.pinned_hostname or server_hostname,
            session=session,
        )

    def wrap_bio(
        self,
        incoming: ssl.MemoryBIO,
        outgoing: ssl.MemoryBIO,
        server_side: bool = False,
        server_hostname: str | bytes | None = None,
        session: ssl.SSLSession | None = None,
    ) -> ssl.SSLObject:
        return super().wrap_bio(
            incoming,
            outgoing,
            server_side=server_side,
            server_hostname=self.pinned_hostname or server_hostname,
            session=session,
        )


def ssl_context_for(tls: TlsConfig) -> BrokerContext:
    """The client context for `tls`: TLS 1.2+, broker verified (ca_file or system CAs) with hostname check,
    client certificate loaded when configured. Raises ConfigError naming the `broker.tls.*` key at fault."""
    context = BrokerContext(ssl.PROTOCOL_TLS_CLIENT)  # check_hostname=True, CERT_REQUIRED
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.pinned_hostname = tls.server_hostname or None
    if tls.verify:
        if tls.ca_file is not None:
            _load(context.load_verify_locations, "broker.tls.ca_file", tls.ca_file, cafile=str(tls.ca_file))
        else:
            context.load_default_certs(ssl.Purpose.SERVER_AUTH)
    else:
        log.warning("broker.tls.verify is false: the broker's certificate is NOT checked (tests only)")
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    if tls.cert_file is not None or tls.key_file is not None:
        if tls.cert_file is None or tls.key_file is None:
            raise ConfigError("broker.tls.cert_file", "cert_file and key_file go together")
        _check_key_mode(tls.key_file)
        _load(
            context.load_cert_chain,
            "broker.tls.cert_file",
            tls.cert_file,
            certfile=str(tls.cert_file),
            keyfile=str(tls.key_file),
        )
    if tls.external_auth and tls.cert_file is None:
        raise ConfigError(
            "broker.tls.external_auth", "needs cert_file and key_file: the certificate is the identity"
        )
    return context


class BrokerTlsOptions(TypedDict, total=False):
    """Keyword arguments for RabbitPublisher / RabbitConsumer."""

    ssl_options: ssl.SSLContext
    external_auth: bool


def broker_connection_options(broker: BrokerConfig) -> BrokerTlsOptions:
    """`{}` without `broker.tls`; else the context and, when configured, `external_auth=True`.

    Without `broker.tls` an amqps:// URL still gets TLS with pika's default context (system CAs, hostname check).
    """
    if broker.tls is None:
        return {}
    options: BrokerTlsOptions = {"ssl_options": ssl_context_for(broker.tls)}
    if broker.tls.external_auth:
        options["external_auth"] = True
    return options


def _check_key_mode(path: Path) -> None:
    """Refuse a client private key that group or others can access, as the signing key is refused."""
    try:
        info = os.stat(path)
    except OSError as exc:
        raise ConfigError("broker.tls.key_file", f"cannot read {path}: {exc.strerror or exc}") from exc
    mode = stat.S_IMODE(info.st_mode)
    if mode & 0o077:
        raise ConfigError(
            "broker.tls.key_file",
            f"{path} is accessible by group or others (mode {mode:04o}); run chmod 600 {path}",
        )


def _load(method: Any, key: str, path: Path, **kwargs: Any) -> None:
    try:
        method(**kwargs)
    except FileNotFoundError as exc:
        raise ConfigError(key, f"{exc.filename or path}: no such file") from exc
    except OSError as exc:  # ssl.SSLError is an OSError
        reason = getattr(exc, "reason", None) or exc.strerror or str(exc)
        raise ConfigError(key, f"{path}: cannot load ({reason})") from exc
