"""The file manifest event: `data.warnings` appears only for a file with warnings (docs/events.md)."""

from __future__ import annotations

from typing import Any

from bridge.dtn.model import FileHeader
from bridge.events.manifest import build_manifest
from bridge.signing import canonicalize

HEADER = FileHeader("ZHV", "0000475656", "D0010002", "D", "UDMS", "X", "MRCY", "20160302153151",
                    test_data_flag="OPER")
WARNING = {"rule": "mpan-check-digit", "line": 2, "group": "026", "item": 1, "item_key": "mpan_core",
           "item_format": "NUM(13)", "message": "m", "text": "t"}


def manifest(**extra: Any) -> dict[str, Any]:
    return build_manifest(HEADER, sha256="0" * 64, size=10, original_name="a.uff", flow_count=1, group_count=3,
                          first_event_id="f", last_event_id="l", **extra)


def test_no_warnings_no_key() -> None:
    """Without warnings (none given, or an empty list) the manifest's bytes are those it always had."""
    assert canonicalize(manifest(), known_types=True) == canonicalize(manifest(warnings=[]), known_types=True)
    assert list(manifest()["data"]) == [
        "file_identifier", "flow", "from_role", "from_participant", "to_role", "to_participant", "test_data_flag",
        "created", "original_name", "size", "sha256", "flow_count", "group_count", "events", "first_event_id",
        "last_event_id"]


def test_warnings_listed() -> None:
    with_warnings = manifest(warnings=[WARNING])
    assert with_warnings["data"]["warnings"] == [WARNING]
    assert with_warnings["id"] == manifest()["id"]  # the same file: the same manifest id
