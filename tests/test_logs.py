"""bridge.logs: the redaction processor (keys and meter data out of log lines) and URL password redaction."""

from __future__ import annotations

import json
import logging
import os
import re
import signal
import socket
import string
import subprocess
import sys
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

import pytest
import structlog
import yaml
from hypothesis import given
from hypothesis import strategies as st

from bridge.config import parse_config
from bridge.logs import (
    JOURNAL_PRIORITIES,
    PERSONAL_KEYS,
    SECRET_KEYS,
    configure_logging,
    journal_stream,
    redact,
    redact_url,
)
from tests.conftest import REPO
from tests.helpers import wait_until

MARK = "S3CRETMARK"  # in every generated password; the other URL parts cannot contain it (lower case, digits)
LEVELS = ("debug", "info", "warning", "error", "critical")

hosts = st.from_regex(r"[a-z][a-z0-9-]{0,20}(\.[a-z][a-z0-9-]{0,10}){0,2}", fullmatch=True)
users = st.text(alphabet=string.ascii_lowercase + string.digits + "_.-", min_size=1, max_size=12)
vhosts = st.text(alphabet=string.ascii_lowercase + string.digits + "%", max_size=8)
passwords = st.builds(lambda a, b: a + MARK + b, st.text(max_size=12), st.text(max_size=12))
ports = st.integers(min_value=1, max_value=65535)
schemes = st.sampled_from(["amqp", "amqps"])


class TestRedactUrl:
    def test_password_with_at_sign(self) -> None:
        """Issue 14: `amqp://u:p@ss@host` used to show `ss@host`; urllib finds the host after the last `@`."""
        assert redact_url("amqp://u:p@ss@host") == "amqp://u:***@host"
        config = parse_config({"broker": {"urls": ["amqp://u:p@ss@host:5672/"]}}, base_dir="/")
        assert config.broker.redacted_urls == ("amqp://u:***@host:5672/",)

    @given(schemes, users, passwords, hosts, ports, vhosts)
    def test_raw_password_never_shown(self, scheme: str, user: str, password: str, host: str, port: int,
                                      vhost: str) -> None:
        """Whatever the password holds, unencoded (`@`, `:`, `/`, `?`, `#`, spaces, ...), none of it is shown."""
        assert MARK not in redact_url(f"{scheme}://{user}:{password}@{host}:{port}/{vhost}")

    @given(schemes, users, passwords, hosts, ports, vhosts)
    def test_encoded_password_keeps_the_rest(self, scheme: str, user: str, password: str, host: str, port: int,
                                             vhost: str) -> None:
        """A percent-encoded password is replaced by *** and the rest of the URL is kept as it was."""
        shown = redact_url(f"{scheme}://{user}:{quote(password, safe='')}@{host}:{port}/{vhost}")
        assert shown == f"{scheme}://{user}:***@{host}:{port}/{vhost}"
        parts = urlsplit(shown)
        assert (parts.hostname, parts.port, parts.password) == (host, port, "***")

    @given(schemes, st.one_of(st.none(), users), hosts, ports, vhosts)
    def test_url_without_password_unchanged(self, scheme: str, user: str | None, host: str, port: int,
                                            vhost: str) -> None:
        url = f"{scheme}://{f'{user}@' if user else ''}{host}:{port}/{vhost}"
        assert redact_url(url) == url

    @pytest.mark.parametrize("url", ["amqp://u:pa/ss@host/", "amqp://u:12/ss@host", "amqp://u:pa?ss@h",
                                     "amqp://u:pa#ss@h", "amqp://[::1:p@h"])
    def test_unreadable_credentials_show_the_scheme_only(self, url: str) -> None:
        assert redact_url(url) == "amqp://***"


secret_names = st.one_of(
    st.sampled_from(sorted(SECRET_KEYS)),
    st.builds(lambda stem, suffix: stem + suffix, st.text(string.ascii_lowercase, max_size=8),
              st.sampled_from(["_key", "_password", "_secret"])),
).flatmap(lambda name: st.sampled_from([name, name.upper(), name.title()]))
personal_names = st.sampled_from(sorted(PERSONAL_KEYS)).flatmap(
    lambda name: st.sampled_from([name, name.upper(), name.title()]))
plain_names = st.text(string.ascii_lowercase + "_", min_size=1, max_size=12).filter(
    lambda name: name not in SECRET_KEYS | PERSONAL_KEYS and not name.endswith(("_key", "_password", "_secret")))
values = st.one_of(st.none(), st.integers(), st.text(max_size=30), st.lists(st.text(max_size=5), max_size=3),
                   st.dictionaries(st.text(max_size=5), st.integers(), max_size=3))


class TestRedactProcessor:
    @given(st.sampled_from(LEVELS), secret_names, values)
    def test_secrets_redacted_at_every_level(self, level: str, name: str, value: Any) -> None:
        """Key material is never logged, at debug neither."""
        assert redact(None, level, {"event": "x", name: value})[name] == "[redacted]"

    @given(st.sampled_from(LEVELS), personal_names, values)
    def test_meter_data_only_at_debug(self, level: str, name: str, value: Any) -> None:
        """Meter data and whole events stay out of every level but debug."""
        shown = redact(None, level, {"event": "x", name: value})[name]
        assert shown == (value if level == "debug" else "[personal data: debug only]")

    @given(st.sampled_from(LEVELS), plain_names, st.one_of(st.none(), st.integers(), st.booleans(),
                                                           st.text(alphabet=string.printable.replace(":", ""))))
    def test_other_values_untouched(self, level: str, name: str, value: Any) -> None:
        assert redact(None, level, {name: value})[name] == value

    @given(st.sampled_from(LEVELS), plain_names, users, passwords, hosts)
    def test_url_password_hidden_in_any_text(self, level: str, name: str, user: str, password: str,
                                             host: str) -> None:
        """A URL quoted in an error text or listed in a value loses its password (the rest of the text stays)."""
        url = f"amqp://{user}:{quote(password, safe='')}@{host}/"
        event = redact(None, level, {name: f"cannot connect to {url}: refused", "urls": [url, url]})
        assert event[name] == f"cannot connect to amqp://{user}:***@{host}/: refused"
        assert event["urls"] == [f"amqp://{user}:***@{host}/"] * 2

    def test_through_the_configured_chain(self, capsys: pytest.CaptureFixture[str]) -> None:
        """The JSON lines the daemon writes carry neither the key nor the reading nor the password."""
        configure_logging("info", "json")
        try:
            structlog.get_logger("t").error("x", private_key="-----BEGIN", values=[1234.5],
                                            error="amqp://u:p@ss@host/ refused")
        finally:
            structlog.reset_defaults()
        line = json.loads(capsys.readouterr().err)
        assert line["private_key"] == "[redacted]" and line["values"] == "[personal data: debug only]"
        assert line["error"] == "amqp://u:***@host/ refused"


def _closed_port() -> int:
    """A local port nothing listens on (bound, then released)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _daemon_with_broker_down(tmp_path: Path, *, journal: bool) -> tuple[list[str], list[str]]:
    """`dtn-bridge run` against a closed port until the RabbitMQ adapter (standard logging) retried twice, then
    SIGTERM: its stdout and stderr lines. With `journal`, stderr is announced as systemd's journal stream."""
    config = tmp_path / "bridge.yaml"
    config.write_text(yaml.safe_dump({
        "broker": {"urls": [f"amqp://guest:secretpw@127.0.0.1:{_closed_port()}/"], "connect_timeout": 1},
        "flows": {"definitions": str(REPO / "flow_definitions")},
        "inbound": {"workers": 0}, "outbound": {"workers": 0}, "log": {"format": "json"},
    }))
    out, err = tmp_path / "stdout", tmp_path / "stderr"
    with out.open("wb") as stdout, err.open("wb") as stderr:
        env = {key: value for key, value in os.environ.items() if key not in ("JOURNAL_STREAM", "NOTIFY_SOCKET")}
        if journal:
            details = os.fstat(stderr.fileno())
            env["JOURNAL_STREAM"] = f"{details.st_dev}:{details.st_ino}"
        process = subprocess.Popen([sys.executable, "-m", "bridge", "run", "--config", str(config)], cwd=tmp_path,
                                   stdout=stdout, stderr=stderr, env=env)
        try:
            wait_until(lambda: err.read_text().count("RabbitMQ unavailable") >= 2, 60,
                       lambda: f"no retries logged: {err.read_text()!r}")
        finally:
            process.send_signal(signal.SIGTERM)
            process.wait(30)
    return out.read_text().splitlines(), err.read_text().splitlines()


class TestEveryLineIsJson:
    """Issue 15: pika and the RabbitMQ adapter log through the standard library; their lines were plain text between
    the JSON ones and stopped `journalctl -o cat | jq` at the first."""

    def test_broker_down(self, tmp_path: Path) -> None:
        stdout, stderr = _daemon_with_broker_down(tmp_path, journal=False)
        assert stdout == []
        entries = [json.loads(line) for line in stderr]  # every line, or this fails naming it
        retries = [entry for entry in entries if "RabbitMQ unavailable" in entry["event"]]
        assert len(retries) >= 2 and all(entry["level"] == "warning" for entry in retries)
        assert retries[0]["logger"] == "bridge.adapters.rabbitmq.client"
        assert {"daemon_starting", "stop_requested"} <= {entry["event"] for entry in entries}
        assert "secretpw" not in "\n".join(stderr)

    def test_journal_priorities(self, tmp_path: Path) -> None:
        """Under systemd each line starts with its sd-daemon priority, so `journalctl -p warning` finds warnings."""
        _stdout, stderr = _daemon_with_broker_down(tmp_path, journal=True)
        assert stderr
        for line in stderr:
            match = re.fullmatch(r"<([0-7])>(\{.*\})", line)
            assert match, line
            entry = json.loads(match[2])
            assert int(match[1]) == JOURNAL_PRIORITIES[entry["level"]], line
        assert any(line.startswith("<4>") for line in stderr) and any(line.startswith("<6>") for line in stderr)

    def test_a_stderr_that_is_not_the_journal_gets_no_prefix(self, tmp_path: Path) -> None:
        """A child that inherited JOURNAL_STREAM but writes elsewhere (sd-daemon(3): compare device and inode)."""
        with (tmp_path / "other").open("w") as other:
            assert not journal_stream({"JOURNAL_STREAM": "1:2"}, other)
            details = os.fstat(other.fileno())
            assert journal_stream({"JOURNAL_STREAM": f"{details.st_dev}:{details.st_ino}"}, other)
            assert not journal_stream({}, other)

    def test_standard_logging_is_redacted(self, capsys: pytest.CaptureFixture[str]) -> None:
        configure_logging("info", "json")
        try:
            logging.getLogger("bridge.test").warning("cannot connect to %s", "amqp://u:p4ss@host/")
            logging.getLogger("pika.test").info("chatty below warning")
        finally:
            structlog.reset_defaults()
        lines = capsys.readouterr().err.splitlines()
        assert [json.loads(line)["event"] for line in lines] == ["cannot connect to amqp://u:***@host/"]
