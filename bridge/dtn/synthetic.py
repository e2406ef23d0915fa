"""Valid synthetic DTN files from flow definitions, for examples, property tests and benchmarks.

Every value is drawn from a seeded `random.Random`, so a seed always gives the same file. Files pass the named checks
their definitions refer to: MPAN Cores end in their check digit, period groups hold as many periods as their date has.
"""

from __future__ import annotations

import random
import string
from collections.abc import Iterator
from datetime import date, timedelta

from bridge.dtn.checks import MPAN_CHECK_DIGIT, mpan_check_digit, settlement_period_count
from bridge.dtn.compiled import DataItem, FlowDefinition, GroupDefinition
from bridge.dtn.model import FileHeader, GroupInstance
from bridge.dtn.writer import FlowFileWriter

_TEXT = string.ascii_uppercase + string.digits
_EPOCH = date(2020, 1, 1)


def item_text(item: DataItem, rng: random.Random) -> str:
    """A valid text for one data item (sometimes empty where the item is optional)."""
    if item.presence == "unused" or (item.presence == "optional" and rng.random() < 0.3):
        return ""
    if item.values is not None:
        return rng.choice(item.values)
    logical = item.format
    kind = logical.kind
    if kind == "CHAR":
        return "".join(rng.choice(_TEXT) for _ in range(rng.randint(1, min(logical.length or 1, 12))))
    if kind == "INT":
        return str(rng.randint(0, 10 ** min(logical.length or 1, 9) - 1))
    if kind == "NUM":
        assert logical.length is not None
        integer = str(rng.randint(0, 10 ** min(logical.length - logical.scale, 9) - 1))
        if logical.length - logical.scale == 13:
            integer = str(rng.randint(10**12, 10**13 - 1))  # MPAN-like: 13 digits
        if MPAN_CHECK_DIGIT in item.checks:
            integer = integer[:12] + str(mpan_check_digit(integer))
        sign = "-" if logical.signed and rng.random() < 0.2 else ""
        fraction = "." + "".join(rng.choice(string.digits) for _ in range(logical.scale)) if logical.scale else ""
        return sign + integer + fraction
    day = _EPOCH + timedelta(days=rng.randint(0, 2000))
    if kind == "DATE":
        return day.strftime("%Y%m%d")
    clock = f"{rng.randint(0, 23):02d}{rng.randint(0, 59):02d}{rng.randint(0, 59):02d}"
    if kind == "DATETIME":
        return day.strftime("%Y%m%d") + clock
    if kind == "TIME":
        return clock
    return rng.choice("TF")


def _count(group: GroupDefinition, rng: random.Random, fanout: int) -> int:
    cardinality = group.strict_range
    if cardinality.allowed is not None:
        return rng.choice(sorted(cardinality.allowed))
    high = cardinality.maximum if cardinality.maximum is not None else max(cardinality.minimum, 1) + fanout
    return rng.randint(cardinality.minimum, min(high, cardinality.minimum + fanout))


def group_instance(group: GroupDefinition, rng: random.Random, fanout: int = 2) -> GroupInstance:
    """A valid instance of `group` with children drawn within their DTC ranges."""
    instance = GroupInstance(group, tuple(item_text(item, rng) for item in group.items), 0)
    for child in group.children:
        count = _count(child, rng, fanout)
        if child.periods is not None and (day := instance.values[child.periods.date_item.position - 1]):
            count = settlement_period_count(date(int(day[:4]), int(day[4:6]), int(day[6:8])), child.periods.clock)
        for _ in range(count):
            instance.children.append(group_instance(child, rng, fanout))
    return instance


def synthetic_header(definition: FlowDefinition, rng: random.Random, file_number: int = 1) -> FileHeader:
    """A ZHV header between two made-up participants, roles taken from the flow's routes where known."""
    from_role, to_role = definition.routes[0] if definition.routes else ("X", "X")
    created = (_EPOCH + timedelta(days=rng.randint(0, 2000))).strftime("%Y%m%d") + "120000"
    return FileHeader("ZHV", f"{file_number:010d}", definition.reference, from_role, "SYNA", to_role, "SYNB",
                      created, test_data_flag="OPER")


def synthetic_file(definition: FlowDefinition, seed: int, *, instances: int | None = None, fanout: int = 2,
                   file_number: int = 1) -> Iterator[str]:
    """The lines (LF-terminated) of a valid file of `definition`: every level-1 group within its range, and at least
    one flow instance."""
    rng = random.Random(seed)
    header = synthetic_header(definition, rng, file_number)
    writer = FlowFileWriter(header)
    yield writer.header()
    written = 0
    for group in definition.level1:
        count = _count(group, rng, fanout)
        if instances is not None and group.strict_range.maximum is None:
            count = max(instances, group.strict_range.minimum)
        for _ in range(count):
            yield from writer.instance(group_instance(group, rng, fanout))
        written += count
    if not written:  # every level-1 group optional and none drawn: a file with no event to carry, so one instance
        group = next(group for group in definition.level1 if group.strict_range.has_room(0))
        yield from writer.instance(group_instance(group, rng, fanout))
    yield writer.trailer(header.created[:8] + "120500")
