"""Shared builders for the governance tests: hand-made events and rule sets over the shipped definitions."""

from __future__ import annotations

import copy
from dataclasses import replace
from typing import Any

from bridge.dtn.definitions import DefinitionSet, load_definitions
from tests.conftest import REPO

DEFINITIONS = load_definitions(REPO / "flow_definitions")
OWN_ID, OWN_ROLE = "MRCY", "X"

D0010_DATA: dict[str, Any] = {
    "mpan_cores": {
        "mpan_core": "2200031930792",
        "bsc_validation_status": "V",
        "site_visits": [{"site_visit_check_code": "01", "additional_information": "KEY AT NO 12"}],
        "meter_reading_types": [
            {"meter_id": "S85D24767", "reading_type": "C",
             "register_readings": [{"meter_register_id": "01", "reading_date_time": "2016-03-01T00:00:00",
                                    "register_reading": "20231.0", "reading_method": "N"}]},
            {"meter_id": "S85D24768", "reading_type": "C", "register_readings": []},
        ],
    }
}


def event(flow: str = "D0010", version: str = "002", *, sender: str = "UDMS", sender_role: str = "D",
          recipient: str = OWN_ID, recipient_role: str = OWN_ROLE, flag: str | None = "OPER",
          envelope: str | None = "ZHV", data: dict[str, Any] | None = None, **extra: Any) -> dict[str, Any]:
    """A flow event as the envelope builds it (docs/events.md), with only what the rules look at varied."""
    built: dict[str, Any] = {
        "specversion": "1.0", "id": "5d4c0750-ec75-55dc-b3f5-6bf66349c005", "source": f"urn:mpid:{sender}",
        "type": f"uk.dtc.{flow}.v{version}", "time": "2016-03-02T15:31:51Z", "datacontenttype": "application/json",
        "dtcfileid": "0000475656", "dtcfromrole": sender_role, "dtcfrom": sender, "dtctorole": recipient_role,
        "dtcto": recipient, "dtccreated": "20160302153151", "dtccompleted": "20160302154650", "dtcflowcount": 11,
        "dtcindex": 6, "subject": "2200031930792",
        "data": copy.deepcopy(D0010_DATA) if data is None else data,
    }
    if flag is not None:
        built["dtctestflag"] = flag
    if envelope is not None:
        built["dtcenvelope"] = envelope
    built.update(extra)
    return built


def without_routes(*references: str) -> DefinitionSet:
    """The shipped definitions with the routes of some flows taken away (every shipped flow has routes)."""
    definitions = dict(DEFINITIONS.items())
    for reference in references:
        definitions[reference] = replace(definitions[reference], routes=())
    return DefinitionSet(definitions)
