"""Tests of bridge.config: loading, defaults, validation errors naming the key, path resolution, folders."""

from __future__ import annotations

import ast
import os
import re
import stat
import textwrap
from pathlib import Path

import pytest

from bridge.config import (
    DEPRECATED,
    SECTIONS,
    BridgeConfig,
    TlsConfig,
    load_config,
    parse_config,
)
from bridge.dtn.checks import DEFAULT_SEVERITIES
from bridge.errors import ConfigError
from bridge.schema import settings_of
from bridge.service import ensure_folders, load_startup

REPO = Path(__file__).resolve().parents[1]


def write(tmp_path: Path, text: str, name: str = "bridge.yaml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def error_of(tmp_path: Path, text: str) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, text))
    return info.value


class TestDefaults:
    def test_empty_file_gives_all_defaults(self, tmp_path: Path) -> None:
        """An empty file is a valid config: every section takes its defaults."""
        config = load_config(write(tmp_path, ""))
        assert config.participant.id == "DTNB" and config.participant.role == "X"
        assert config.broker.urls == ("amqp://guest:guest@127.0.0.1:5672/",)
        assert (config.broker.heartbeat, config.broker.confirm_window) == (30, 1000)
        assert config.broker.connect_timeout == 10.0 and config.broker.stream_max_age == "30D"
        assert config.broker.tls is None
        assert config.watch.mode == "inotify" and config.watch.stable_seconds == 2.0 and config.watch.trust_renames
        assert config.watch.ignore == ("*.tmp", "*.part", ".*", "~*", "*.filepart")
        assert config.spool.file_mode == 0o640 and config.spool.dir_mode == 0o750
        assert config.signing.key is None and config.signing.trust is None
        assert config.flows.strict is False
        assert config.inbound.duplicates == "skip" and config.inbound.max_file_bytes == 1 << 30
        assert config.inbound.workers == 2
        assert config.outbound.batch_size == 1000 and config.outbound.prefetch == 2000
        assert config.outbound.workers == 2 and config.warnings == ()
        assert config.log.level == "info" and config.log.format == "auto"
        assert config.metrics.port is None
        assert config.checks.severities == {"mpan_check_digit": "error", "settlement_periods": "error"}

    def test_default_paths_resolve_against_config_folder(self, tmp_path: Path) -> None:
        """Default paths are relative to the config file's folder, not the working directory."""
        folder = tmp_path / "config"
        folder.mkdir()
        config = load_config(write(folder, ""))
        assert config.watch.inbound == folder / "var/dtn/inbound"
        assert config.spool.archive == folder / "var/archive"
        assert config.state.ledger_path == folder / "var/state/ledger.sqlite3"
        assert config.flows.definitions == ()  # the shipped definitions only: nothing beside the config is needed
        assert config.outbound.folder == folder / "var/dtn/outbound"

    def test_config_is_frozen(self, tmp_path: Path) -> None:
        """Sections are immutable once loaded."""
        config = load_config(write(tmp_path, ""))
        with pytest.raises(AttributeError):
            config.broker.heartbeat = 5  # type: ignore[misc]

    def test_source_is_recorded(self, tmp_path: Path) -> None:
        """The config remembers the file it came from."""
        path = write(tmp_path, "")
        assert load_config(path).source == path


class TestExampleConfig:
    def test_example_loads(self) -> None:
        """The shipped example loads and puts var/ at the repository root."""
        config = load_config(REPO / "config" / "bridge.example.yaml")
        assert isinstance(config, BridgeConfig)
        assert config.watch.inbound == REPO / "var" / "dtn" / "inbound"
        assert config.state.dir == REPO / "var" / "state"
        assert config.flows.definitions == ()  # the shipped ones: the example works wherever it is copied
        assert config.spool.file_mode == 0o640

    def test_example_equals_defaults_apart_from_paths(self, tmp_path: Path) -> None:
        """The example documents the defaults: only the var/ paths differ."""
        example = load_config(REPO / "config" / "bridge.example.yaml")
        defaults = parse_config({}, base_dir=REPO / "config")
        assert example.broker == defaults.broker
        assert example.participant == defaults.participant
        assert example.inbound == defaults.inbound
        assert example.log == defaults.log and example.metrics == defaults.metrics
        assert (example.signing.key, example.signing.ca_bundle) == (defaults.signing.key, defaults.signing.ca_bundle)
        assert example.signing.trust == REPO / "var" / "state" / "dev-signing.jwks.json"  # the development key's
        assert example.flows == defaults.flows
        assert (example.watch.mode, example.watch.ignore) == (defaults.watch.mode, defaults.watch.ignore)


class TestValues:
    def test_full_config(self, tmp_path: Path) -> None:
        """Every section can be set."""
        config = load_config(
            write(
                tmp_path,
                """
                participant: {id: ABCD, role: M}
                broker:
                  urls: ["amqps://u:p@a:5671/", "amqps://u:p@b:5671/"]
                  heartbeat: 5
                  confirm_window: 5
                  connect_timeout: 2.5
                  stream_max_age: 7D
                  tls: {ca_file: ca.pem, cert_file: c.pem, key_file: k.pem, server_hostname: mq, verify: false}
                watch: {inbound: /srv/in, mode: polling, rescan_seconds: 5, stable_seconds: 0, poll_interval: 0.5,
                        ignore: ["*.x"], trust_renames: false}
                spool: {file_mode: 0600, dir_mode: "0o700"}
                signing: {key: keys/k.pem, trust: keys/trust.jwks, ca_bundle: ca.pem}
                flows: {definitions: defs, strict: true}
                inbound: {duplicates: republish, max_file_bytes: 10, workers: 3}
                outbound: {batch_size: 10, batch_seconds: 1, name_pattern: "{flow}_{file_identifier}.txt", workers: 0}
                log: {level: DEBUG, format: json}
                metrics: {port: 9100}
                """,
            )
        )
        assert config.participant.id == "ABCD"
        assert config.broker.urls == ("amqps://u:p@a:5671/", "amqps://u:p@b:5671/")
        assert config.broker.tls == TlsConfig(
            tmp_path / "ca.pem", tmp_path / "c.pem", tmp_path / "k.pem", "mq", verify=False
        )
        assert config.watch.inbound == Path("/srv/in") and config.watch.stable_seconds == 0.0
        assert not config.watch.trust_renames
        assert config.spool.file_mode == 0o600 and config.spool.dir_mode == 0o700
        assert config.signing.key == tmp_path / "keys/k.pem"
        assert config.flows.definitions == (tmp_path / "defs",) and config.flows.strict
        assert config.log.level == "debug"
        assert config.metrics.port == 9100
        assert config.inbound.max_file_bytes == 10 and config.inbound.workers == 3 and config.outbound.workers == 0

    def test_relative_paths_resolve_against_config_folder(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """A relative path is joined to the config folder and normalised, whatever the working directory."""
        folder = tmp_path / "etc"
        folder.mkdir()
        monkeypatch.chdir(tmp_path)
        config = load_config(write(folder, "watch: {inbound: ../in}\nstate: {dir: ./st}\n"))
        assert config.watch.inbound == tmp_path / "in"
        assert config.state.dir == folder / "st"

    def test_definitions_folders(self, tmp_path: Path) -> None:
        """flows.definitions is a list of folders over the shipped definitions, or one folder alone (as it was
        before the definitions shipped in the package), each resolved against the config's folder."""
        listed = load_config(write(tmp_path, "flows: {definitions: [mine, /srv/flows]}\n"))
        assert listed.flows.definitions == (tmp_path / "mine", Path("/srv/flows"))
        single = load_config(write(tmp_path, "flows: {definitions: ../flow_definitions}\n"))
        assert single.flows.definitions == (tmp_path.parent / "flow_definitions",)
        assert load_config(write(tmp_path, "flows: {definitions: null}\n")).flows.definitions == ()

    def test_relative_config_path(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        """A config path given relative to the working directory still anchors its paths correctly."""
        (tmp_path / "etc").mkdir()
        write(tmp_path / "etc", "state: {dir: st}\n")
        monkeypatch.chdir(tmp_path)
        assert load_config("etc/bridge.yaml").state.dir == tmp_path / "etc" / "st"

    def test_home_is_expanded(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        """`~` in a path means the home folder."""
        monkeypatch.setenv("HOME", str(tmp_path / "home"))
        config = load_config(write(tmp_path, "state: {dir: ~/state}\n"))
        assert config.state.dir == tmp_path / "home" / "state"

    def test_tls_true_means_system_defaults(self, tmp_path: Path) -> None:
        """`tls: true` enables TLS with the system CAs."""
        assert load_config(write(tmp_path, "broker: {tls: true}\n")).broker.tls == TlsConfig()

    def test_null_section_is_defaults(self, tmp_path: Path) -> None:
        """A section written but left empty takes its defaults."""
        assert load_config(write(tmp_path, "broker:\n")).broker.heartbeat == 30

    def test_password_hidden_in_repr(self, tmp_path: Path) -> None:
        """Broker passwords do not leak through repr or the redacted URLs."""
        config = load_config(write(tmp_path, "broker: {urls: ['amqp://u:s3cret@h/']}\n"))
        assert "s3cret" not in repr(config)
        assert config.broker.redacted_urls == ("amqp://u:***@h/",)


class TestChecks:
    def test_severities(self, tmp_path: Path) -> None:
        """`checks:` sets each named check's severity; the others keep their defaults."""
        config = load_config(write(tmp_path, "checks: {mpan_check_digit: warn}\n"))
        assert config.checks.severities == {"mpan_check_digit": "warn", "settlement_periods": "error"}
        config = load_config(write(tmp_path, "checks: {mpan_check_digit: 'off', settlement_periods: warn}\n"))
        assert config.checks.severities == {"mpan_check_digit": "off", "settlement_periods": "warn"}

    @pytest.mark.parametrize(("text", "key", "message"), [
        ("checks: {mpan_check_digit: fatal}\n", "checks.mpan_check_digit", "'fatal' is not one of: error, warn, off"),
        ("checks: {settlement_period: warn}\n", "checks.settlement_period",
         "unknown key; did you mean 'settlement_periods'?"),
    ])
    def test_refused(self, tmp_path: Path, text: str, key: str, message: str) -> None:
        error = error_of(tmp_path, text)
        assert (error.key, error.message) == (key, message)


class TestErrors:
    @pytest.mark.parametrize(
        ("text", "key"),
        [
            ("brokr: {}\n", "brokr"),
            ("broker: {hearbeat: 5}\n", "broker.hearbeat"),
            ("broker: {tls: {ca: x}}\n", "broker.tls.ca"),
            ("metrics: {port: 1, host: x}\n", "metrics.host"),
        ],
    )
    def test_unknown_key(self, tmp_path: Path, text: str, key: str) -> None:
        """An unknown key is an error naming its dotted path."""
        error = error_of(tmp_path, text)
        assert error.key == key and "unknown key" in error.message

    def test_unknown_key_suggests(self, tmp_path: Path) -> None:
        """A misspelt key gets a did-you-mean."""
        assert "heartbeat" in error_of(tmp_path, "broker: {hearbeat: 5}\n").message

    def test_error_names_the_file(self, tmp_path: Path) -> None:
        """The message starts with the file, then the key."""
        error = error_of(tmp_path, "log: {level: loud}\n")
        assert error.source == str(tmp_path / "bridge.yaml")
        assert str(error).startswith(f"{tmp_path / 'bridge.yaml'}: log.level: ")

    @pytest.mark.parametrize(
        ("text", "key"),
        [
            ("broker: {heartbeat: '30'}\n", "broker.heartbeat"),
            ("broker: {heartbeat: true}\n", "broker.heartbeat"),
            ("broker: {heartbeat: 1.5}\n", "broker.heartbeat"),
            ("broker: {urls: amqp://h/}\n", "broker.urls"),
            ("broker: {urls: [amqp://h/, 5]}\n", "broker.urls[1]"),
            ("watch: {stable_seconds: soon}\n", "watch.stable_seconds"),
            ("watch: {inbound: 5}\n", "watch.inbound"),
            ("watch: {ignore: '*.tmp'}\n", "watch.ignore"),
            ("flows: {strict: 'yes please'}\n", "flows.strict"),
            ("flows: {definitions: [defs, 5]}\n", "flows.definitions[1]"),
            ("flows: {definitions: {a: b}}\n", "flows.definitions"),
            ("signing: {key: [a]}\n", "signing.key"),
            ("broker: [a]\n", "broker"),
            ("participant: {id: 1234}\n", "participant.id"),
            ("spool: {file_mode: [1]}\n", "spool.file_mode"),
        ],
    )
    def test_wrong_type(self, tmp_path: Path, text: str, key: str) -> None:
        """A value of the wrong type is an error naming its key."""
        assert error_of(tmp_path, text).key == key

    @pytest.mark.parametrize(
        ("text", "key"),
        [
            ("watch: {mode: fanotify}\n", "watch.mode"),
            ("inbound: {duplicates: drop}\n", "inbound.duplicates"),
            ("log: {format: xml}\n", "log.format"),
            ("log: {level: loud}\n", "log.level"),
        ],
    )
    def test_bad_enum(self, tmp_path: Path, text: str, key: str) -> None:
        """A value outside its choices is an error that lists the choices."""
        error = error_of(tmp_path, text)
        assert error.key == key and "one of" in error.message

    @pytest.mark.parametrize(
        ("text", "key"),
        [
            ("participant: {id: DTN}\n", "participant.id"),
            ("participant: {id: dtnb}\n", "participant.id"),
            ("participant: {role: XX}\n", "participant.role"),
            ("broker: {urls: []}\n", "broker.urls"),
            ("broker: {urls: ['http://h/']}\n", "broker.urls[0]"),
            ("broker: {confirm_window: 0}\n", "broker.confirm_window"),
            ("broker: {connect_timeout: 0}\n", "broker.connect_timeout"),
            ("broker: {stream_max_age: 30 days}\n", "broker.stream_max_age"),
            ("broker: {tls: {cert_file: c.pem}}\n", "broker.tls.key_file"),
            ("watch: {rescan_seconds: -1}\n", "watch.rescan_seconds"),
            ("watch: {stable_seconds: .nan}\n", "watch.stable_seconds"),
            ("watch: {inbound: ''}\n", "watch.inbound"),
            ("spool: {file_mode: 640}\n", "spool.file_mode"),
            ("spool: {dir_mode: '0999'}\n", "spool.dir_mode"),
            ("inbound: {max_file_bytes: 0}\n", "inbound.max_file_bytes"),
            ("inbound: {workers: -1}\n", "inbound.workers"),
            ("inbound: {workers: 17}\n", "inbound.workers"),
            ("outbound: {workers: 17}\n", "outbound.workers"),
            ("inbound: {build_workers: 0}\n", "inbound.build_workers"),  # the deprecated keys keep their bounds
            ("inbound: {build_workers: 17}\n", "inbound.build_workers"),
            ("outbound: {name_pattern: '{flow}.usr'}\n", "outbound.name_pattern"),
            ("outbound: {name_pattern: '{nope}{file_identifier}'}\n", "outbound.name_pattern"),
            ("outbound: {name_pattern: '.{file_identifier}'}\n", "outbound.name_pattern"),
            ("outbound: {name_pattern: 'a/{file_identifier}'}\n", "outbound.name_pattern"),
            ("outbound: {name_pattern: '{file_identifier'}\n", "outbound.name_pattern"),
            ("outbound: {name_pattern: '{file_identifier:/>11}'}\n", "outbound.name_pattern"),  # pads with '/'
            ("outbound: {name_pattern: '{file_identifier:>300}.usr'}\n", "outbound.name_pattern"),  # too long
            ("outbound: {name_pattern: \"{file_identifier}\\tx\"}\n", "outbound.name_pattern"),  # a control char
            ("metrics: {port: 70000}\n", "metrics.port"),
            ("outbound: {shared_state: pair}\n", "outbound.shared_state"),  # without single_active_consumer
        ],
    )
    def test_bad_value(self, tmp_path: Path, text: str, key: str) -> None:
        """A value of the right type but not allowed is an error naming its key."""
        assert error_of(tmp_path, text).key == key

    def test_decimal_mode_is_explained(self, tmp_path: Path) -> None:
        """`file_mode: 640` (decimal) is refused with a hint to write octal."""
        assert "octal" in error_of(tmp_path, "spool: {file_mode: 640}\n").message

    def test_password_not_in_url_error(self, tmp_path: Path) -> None:
        """A bad URL's password is not echoed in the error."""
        error = error_of(tmp_path, "broker: {urls: ['http://u:s3cret@h/']}\n")
        assert "s3cret" not in str(error)

    def test_top_level_must_be_mapping(self, tmp_path: Path) -> None:
        """A file that is a list is refused."""
        assert error_of(tmp_path, "- a\n").key == "(root)"

    def test_yaml_syntax_error(self, tmp_path: Path) -> None:
        """A YAML syntax error is a ConfigError with the line."""
        error = error_of(tmp_path, "broker: {urls: [\n")
        assert error.key == "(yaml)" and "line" in error.message

    def test_duplicate_key(self, tmp_path: Path) -> None:
        """A key written twice is refused (PyYAML would keep the last silently)."""
        assert "duplicate key" in error_of(tmp_path, "log: {level: info}\nlog: {level: debug}\n").message

    def test_missing_file(self, tmp_path: Path) -> None:
        """A missing config file is a ConfigError naming the file."""
        with pytest.raises(ConfigError) as info:
            load_config(tmp_path / "nope.yaml")
        assert info.value.source == str(tmp_path / "nope.yaml")

    def test_parse_config_without_source(self, tmp_path: Path) -> None:
        """parse_config reports the key even without a file."""
        with pytest.raises(ConfigError) as info:
            parse_config({"watch": {"mode": "x"}}, base_dir=tmp_path)
        assert info.value.key == "watch.mode" and info.value.source is None


class TestEnsureFolders:
    def test_creates_folders_with_mode(self, tmp_path: Path) -> None:
        """Every folder is created, new ones with dir_mode regardless of the umask."""
        config = load_config(write(tmp_path, "spool: {dir_mode: '0700'}\n"))
        old = os.umask(0o077 ^ 0o777)  # a umask that would otherwise strip permissions oddly
        try:
            created = ensure_folders(config)
        finally:
            os.umask(old)
        assert created == config.folders
        for folder in config.folders:
            assert folder.is_dir()
            assert stat.S_IMODE(folder.stat().st_mode) == 0o700
        assert stat.S_IMODE((tmp_path / "var").stat().st_mode) == 0o700

    def test_existing_folders_left_alone(self, tmp_path: Path) -> None:
        """An existing folder keeps its permissions; running twice is fine."""
        (tmp_path / "var").mkdir(mode=0o755)
        os.chmod(tmp_path / "var", 0o755)
        config = load_config(write(tmp_path, ""))
        ensure_folders(config)
        ensure_folders(config)
        assert stat.S_IMODE((tmp_path / "var").stat().st_mode) == 0o755

    def test_file_in_the_way(self, tmp_path: Path) -> None:
        """A file where a folder should be is a ConfigError naming the first folder it blocks, before any is made."""
        (tmp_path / "var").write_text("x")
        with pytest.raises(ConfigError) as info:
            ensure_folders(load_config(write(tmp_path, "")))
        assert info.value.key == "watch.inbound" and "is not a folder" in info.value.message

    def test_processing_on_another_filesystem(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        """Processing must share inbound's filesystem (claims are renames): otherwise a ConfigError on the key."""
        config = load_config(write(tmp_path, ""))
        real_stat = os.stat

        def fake_stat(path: object, *args: object, **kwargs: object) -> os.stat_result:
            result = real_stat(path, *args, **kwargs)  # type: ignore[arg-type]
            if str(path) == str(config.spool.processing):
                values = list(result)
                values[stat.ST_DEV] += 1
                return os.stat_result(values)
            return result

        ensure_folders(config)
        monkeypatch.setattr(os, "stat", fake_stat)
        with pytest.raises(ConfigError) as info:
            ensure_folders(config)
        assert info.value.key == "spool.processing"


class TestSecurityKeys:
    """broker.tls.external_auth and spool.encryption_key / encryption_keys_old (docs/security.md)."""

    def test_defaults(self, tmp_path: Path) -> None:
        """Encryption at rest is off and EXTERNAL auth is off unless asked for."""
        config = load_config(write(tmp_path, "broker: {tls: true}\n"))
        assert config.spool.encryption_key is None and config.spool.encryption_keys_old == ()
        assert config.broker.tls is not None and config.broker.tls.external_auth is False

    def test_external_auth(self, tmp_path: Path) -> None:
        text = """\
            broker:
              urls: ['amqps://broker.example.org:5671/']
              tls: {ca_file: ca.pem, cert_file: client.pem, key_file: client.key, external_auth: true}
        """
        tls = load_config(write(tmp_path, text)).broker.tls
        assert tls is not None and tls.external_auth is True
        assert tls.cert_file == tmp_path / "client.pem" and tls.key_file == tmp_path / "client.key"

    def test_external_auth_needs_a_certificate(self, tmp_path: Path) -> None:
        error = error_of(tmp_path, "broker: {tls: {external_auth: true}}\n")
        assert error.key == "broker.tls.external_auth" and "cert_file" in error.message

    def test_external_auth_must_be_boolean(self, tmp_path: Path) -> None:
        assert error_of(tmp_path, "broker: {tls: {external_auth: 'yes'}}\n").key == "broker.tls.external_auth"

    def test_encryption_keys_resolve_against_config_folder(self, tmp_path: Path) -> None:
        text = """\
            spool:
              encryption_key: keys/spool-2025.key
              encryption_keys_old: [keys/spool-2024.key, /etc/dtn/spool-2023.key]
        """
        spool = load_config(write(tmp_path, text)).spool
        assert spool.encryption_key == tmp_path / "keys" / "spool-2025.key"
        assert spool.encryption_keys_old == (tmp_path / "keys" / "spool-2024.key", Path("/etc/dtn/spool-2023.key"))

    def test_null_old_keys(self, tmp_path: Path) -> None:
        config = load_config(write(tmp_path, "spool: {encryption_key: k, encryption_keys_old: null}\n"))
        assert config.spool.encryption_keys_old == ()

    @pytest.mark.parametrize(
        ("text", "key"),
        [
            ("spool: {encryption_key: 5}\n", "spool.encryption_key"),
            ("spool: {encryption_key: ''}\n", "spool.encryption_key"),
            ("spool: {encryption_key: k, encryption_keys_old: k2}\n", "spool.encryption_keys_old"),
            ("spool: {encryption_key: k, encryption_keys_old: [k2, 3]}\n", "spool.encryption_keys_old[1]"),
            ("spool: {encryption_keys_old: [k2]}\n", "spool.encryption_keys_old"),
            ("spool: {encryption_keys: k}\n", "spool.encryption_keys"),
        ],
    )
    def test_bad_values(self, tmp_path: Path, text: str, key: str) -> None:
        assert error_of(tmp_path, text).key == key

    def test_old_keys_need_a_current_key(self, tmp_path: Path) -> None:
        error = error_of(tmp_path, "spool: {encryption_keys_old: [old.key]}\n")
        assert "encryption_key" in error.message


class TestDeprecatedWorkerKeys:
    """inbound.worker_process + build_workers and outbound.verify_workers, replaced by inbound/outbound.workers."""

    @pytest.mark.parametrize(
        ("text", "inbound", "outbound"),
        [
            ("inbound: {worker_process: false}\n", 0, 2),
            ("inbound: {worker_process: false, build_workers: 5}\n", 0, 2),
            ("inbound: {build_workers: 3}\n", 3, 2),
            ("inbound: {worker_process: true, build_workers: 4}\n", 4, 2),
            ("outbound: {verify_workers: 0}\n", 2, 0),
            ("outbound: {verify_workers: 3}\n", 2, 3),
        ],
    )
    def test_old_keys_still_work(self, tmp_path: Path, text: str, inbound: int, outbound: int) -> None:
        """Each old key still sets the workers it meant, and the load carries one warning naming it."""
        config = load_config(write(tmp_path, text))
        assert (config.inbound.workers, config.outbound.workers) == (inbound, outbound)
        assert len(config.warnings) == 1 and "deprecated" in config.warnings[0]
        section, first_key = text.split(":")[0], text.split("{")[1].split(":")[0]
        assert config.warnings[0].startswith(f"{section}.{first_key}")
        assert f"write {section}.workers instead" in config.warnings[0]

    def test_both_directions_one_warning_each(self, tmp_path: Path) -> None:
        config = load_config(write(tmp_path, "inbound: {build_workers: 3}\noutbound: {verify_workers: 1}\n"))
        assert [warning.split(":")[0] for warning in config.warnings] == ["inbound.build_workers",
                                                                          "outbound.verify_workers"]

    @pytest.mark.parametrize(
        ("text", "key"),
        [
            ("inbound: {workers: 2, worker_process: true}\n", "inbound.worker_process"),
            ("inbound: {build_workers: 2, workers: 2}\n", "inbound.build_workers"),
            ("outbound: {workers: 1, verify_workers: 1}\n", "outbound.verify_workers"),
        ],
    )
    def test_old_and_new_together_is_an_error(self, tmp_path: Path, text: str, key: str) -> None:
        """Which of the two would win is a guess: refused, naming the old key."""
        error = error_of(tmp_path, text)
        assert error.key == key and "replaced by" in error.message

    def test_example_uses_the_new_keys(self) -> None:
        """The shipped example loads without a warning."""
        assert load_config(REPO / "config" / "bridge.example.yaml").warnings == ()


def _config_keys() -> set[str]:
    """Every dotted key of the configuration schema (sections, their settings, broker.tls.*, checks.*)."""
    keys = set(SECTIONS) | {"rules"}
    for section, cls in SECTIONS.items():
        keys |= {f"{section}.{key}" for key, _spec, _default in settings_of(cls)}
        keys |= {f"{section}.{key}" for key in DEPRECATED.get(section, {})}
    keys |= {f"broker.tls.{key}" for key, _spec, _default in settings_of(TlsConfig)}
    keys |= {f"checks.{name}" for name in DEFAULT_SEVERITIES}
    return keys


def _rules_keys() -> set[str]:
    """Every key the rules parser accepts at some level (the sets its Node.check_keys calls are given)."""
    tree = ast.parse((REPO / "bridge" / "rules" / "parse.py").read_text())
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Set):
            names |= {item.value for item in node.elts
                      if isinstance(item, ast.Constant) and isinstance(item.value, str)}
    return names


_SECTION_NAMES = "|".join(sorted({*SECTIONS, "rules", "rabbitmq"}))
_DOTTED = re.compile(rf"(?<![\w./-])((?:{_SECTION_NAMES})(?:\.[a-z_]+(?:\[[^\]]*\])?)+)")


#: Texts of the code shaped like a dotted key that are something else.
_NOT_KEYS = {
    "outbound.rejected": "the routing key of rejected outbound events",
    "participant.denied": "a governance rule's name",
    "participant.not_allowed": "a governance rule's name",
}


def _texts(node: ast.AST) -> list[str]:
    """The string constants of a module but its docstrings (which name modules and attributes), with each
    f-string's literal parts joined around a placeholder."""
    docstrings = {id(body[0].value) for body in (getattr(child, "body", None) for child in ast.walk(node))
                  if isinstance(body, list) and body and isinstance(body[0], ast.Expr)
                  and isinstance(body[0].value, ast.Constant)}
    parts = {id(part) for child in ast.walk(node) if isinstance(child, ast.JoinedStr) for part in child.values}
    found: list[str] = []
    for child in ast.walk(node):
        if id(child) in docstrings or id(child) in parts:
            continue
        if isinstance(child, ast.JoinedStr):
            found.append("".join(part.value if isinstance(part, ast.Constant) else "[]" for part in child.values))
        elif isinstance(child, ast.Constant) and isinstance(child.value, str):
            found.append(child.value)
    return found


class TestKeysNamedInMessages:
    """Issue 15: errors named keys that do not exist (`rabbitmq.heartbeat`, `rabbitmq.prefetch`,
    `rabbitmq.topology.*`). Every dotted key quoted in any text of the code (error messages, advice, log values)
    is a key of the configuration schema."""

    def test_every_dotted_key_in_the_code_exists(self) -> None:
        keys, rules_keys = _config_keys(), _rules_keys()
        wrong: list[str] = []
        seen = 0
        for path in sorted((REPO / "bridge").rglob("*.py")):
            for text in _texts(ast.parse(path.read_text())):
                for match in _DOTTED.finditer(text):
                    dotted = re.sub(r"\[[^\]]*\]", "", match[1]).rstrip(".")
                    seen += 1
                    if dotted in _NOT_KEYS:
                        continue
                    if dotted.startswith("rules."):
                        ok = all(part in rules_keys for part in dotted.split(".")[1:])
                    else:
                        ok = dotted in keys
                    if not ok:
                        wrong.append(f"{path.relative_to(REPO)}: {match[1]!r} in {text[:80]!r}")
        assert not wrong, "\n".join(wrong)
        assert seen > 40  # the scan does find the keys the messages name

    def test_the_scan_catches_a_key_that_does_not_exist(self) -> None:
        texts = _texts(ast.parse('raise ConfigError("rabbitmq.heartbeat", f"see broker.window {x}")'))
        assert [match[1] for text in texts for match in _DOTTED.finditer(text)] == [
            "rabbitmq.heartbeat", "broker.window"]
        assert "broker.window" not in _config_keys() and "broker.heartbeat" in _config_keys()


class TestHeartbeatZero:
    def test_zero_disables_and_passes_the_start_checks(self, tmp_path: Path) -> None:
        """`heartbeat: 0` is documented as disabling heartbeats: it loads, and every start-up check accepts it
        (the connection negotiating 0: tests/adapters/rabbitmq/test_client.py; `run`: tests/e2e)."""
        text = f"broker: {{heartbeat: 0}}\nflows: {{definitions: {REPO}/flow_definitions}}\n"
        config = load_config(write(tmp_path, text))
        assert config.broker.heartbeat == 0
        load_startup(config, create_dev_key=False)
        assert error_of(tmp_path, "broker: {heartbeat: -1}\n").key == "broker.heartbeat"
