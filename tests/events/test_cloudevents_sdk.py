"""Events must travel in CloudEvents structured mode (docs/events.md): through the CloudEvents SDK's RabbitMQ
binding, structured mode keeps every attribute's type and the signature verifies; binary mode carries attributes as
string headers, so dtcindex and dtcflowcount come back as strings and the signature no longer verifies."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest
from cloudevents.core.bindings import rabbitmq
from cloudevents.core.formats.json import JSONFormat

from bridge.dtn.reader import FlowFileReader
from bridge.errors import SignatureError
from bridge.inbound.flowfile import check_file, file_events
from bridge.signing import Signer, TrustStore
from tests.conftest import EXAMPLES


@pytest.fixture
def signed(reader: FlowFileReader, tmp_path: Path) -> tuple[bytes, TrustStore]:
    """A signed event's structured body, and a trust store that knows its key."""
    signer = Signer.generate("EdDSA", participant=None)
    jwks = tmp_path / "trust.jwks.json"
    jwks.write_bytes(orjson.dumps(signer.public_jwks()))
    path = EXAMPLES / "D0010002.txt"
    event = next(iter(file_events(path, reader, check_file(path, reader))))
    return orjson.dumps(signer.sign(event)), TrustStore.from_jwks_file(jwks)


def through_sdk(body: bytes, binary: bool) -> dict[str, object]:
    """The event after the SDK read it as a consumer would, sent it on in one mode, and read it back."""
    event = rabbitmq.from_structured_event(rabbitmq.RabbitMQMessage({}, "application/cloudevents+json", body))
    message = rabbitmq.to_binary_event(event) if binary else rabbitmq.to_structured_event(event)
    back = rabbitmq.from_binary_event(message) if binary else rabbitmq.from_structured_event(message)
    result: dict[str, object] = orjson.loads(JSONFormat().write(back))
    return result


def test_structured_mode_keeps_the_event(signed: tuple[bytes, TrustStore]) -> None:
    body, trust = signed
    event = through_sdk(body, binary=False)
    assert event == orjson.loads(body)
    trust.verify(event)


def test_binary_mode_breaks_types_and_signature(signed: tuple[bytes, TrustStore]) -> None:
    body, trust = signed
    event = through_sdk(body, binary=True)
    original = orjson.loads(body)
    assert (event["dtcindex"], event["dtcflowcount"]) == (str(original["dtcindex"]), str(original["dtcflowcount"]))
    with pytest.raises(SignatureError):
        trust.verify(event)
