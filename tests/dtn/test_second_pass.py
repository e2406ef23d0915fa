"""The second pass over a file the first pass found valid (bridge/dtn/second_pass.py), against `read`.

Line by line (`FlowFileReader.read_valid`) it places lines by their code alone and checks nothing again, so it must
yield exactly the instances `read` yields (groups, values, line numbers, nesting) and keep each instance's lines as the
event id's input. By blocks (`data_by_blocks`) it must make the very same events, byte for byte once canonical. Either
way a file that changed since the first pass must raise, not yield other instances.
"""

from __future__ import annotations

import io
from datetime import date, datetime
from pathlib import Path

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bridge.dtn.compiled import FlowDefinition
from bridge.dtn.definitions import DefinitionSet, load_definition
from bridge.dtn.model import FileHeader, FlowInstance, GroupInstance
from bridge.dtn.reader import FlowFileReader
from bridge.dtn.second_pass import data_by_blocks
from bridge.dtn.synthetic import synthetic_file
from bridge.dtn.writer import FlowFileWriter
from bridge.errors import FlowFileError, SignatureError
from bridge.events.envelope import _content
from bridge.inbound.flowfile import check_file, file_events
from bridge.rules.decide import minimise
from bridge.rules.model import Redaction, SubscriberRoute
from bridge.signing import canonicalize
from tests.conftest import EXAMPLES, SAMPLES
from tests.dtn.test_reader_fastpath import DEFINITIONS, REFERENCES, broken_files, by_blocks, pool_file

READER = FlowFileReader(DEFINITIONS)


def tree(group: GroupInstance) -> tuple[object, ...]:
    return (group.definition, group.values, group.line, [tree(child) for child in group.children])


def both_ways(text: str) -> tuple[list[FlowInstance], list[FlowInstance]]:
    checked = READER.read(io.StringIO(text, newline="")).check()
    assert checked.ok, checked.describe_defects()
    slow = list(READER.read(io.StringIO(text, newline="")))
    fast = list(READER.read_valid(io.StringIO(text, newline=""), checked))
    return slow, fast


def assert_same(text: str) -> None:
    slow, fast = both_ways(text)
    assert [(i.index, tree(i.root)) for i in fast] == [(i.index, tree(i.root)) for i in slow]
    for instance in fast:
        if instance.content is not None:  # kept by the by-code placement: it must be what the id is made of
            assert instance.content == _content(instance.root)


class TestSameInstances:
    @settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(text=broken_files())
    def test_any_valid_file(self, text: str) -> None:
        """Every file the first pass accepts (any definition, pool or ZHV, any line ends) reads the same both ways."""
        if by_blocks(text).ok:
            assert_same(text)

    @settings(max_examples=100, deadline=None)
    @given(reference=st.sampled_from(REFERENCES), seed=st.integers(0, 2**32), pool=st.booleans())
    def test_synthetic_files(self, reference: str, seed: int, pool: bool) -> None:
        definition = DEFINITIONS[reference]
        lines = pool_file(definition, seed) if pool else list(synthetic_file(definition, seed, fanout=2))
        assert_same("".join(line if line.endswith("\n") else line + "\n" for line in lines))

    @pytest.mark.parametrize("path", sorted(EXAMPLES.glob("*.txt")) + sorted(SAMPLES.glob("*_*")),
                             ids=lambda path: path.name)
    def test_examples_and_real_samples(self, path: Path) -> None:
        text = path.read_text(encoding="utf-8", errors="replace")
        if not READER.read(io.StringIO(text, newline="")).check().ok:
            pytest.skip("a sample the first pass rejects (its defects are tested elsewhere)")
        assert_same(text)

    def test_flows_whose_codes_repeat_are_read_line_by_line(self) -> None:
        """Where a code stands twice, a code does not say where a line belongs: `read` does the work."""
        repeating = [ref for ref, definition in DEFINITIONS.items() if definition.group_by_code is None]
        by_code = [ref for ref, definition in DEFINITIONS.items() if definition.group_by_code is not None]
        assert "D0275001" in by_code and "D0010002" in by_code
        for reference in repeating:
            assert_same("".join(synthetic_file(DEFINITIONS[reference], 1, fanout=2)))


D0010 = "".join(synthetic_file(DEFINITIONS["D0010002"], 5, instances=3, fanout=2))


def reshaped(text: str, change: str) -> str:
    """`text` with its shape changed between the passes: a line dropped or repeated, a line of an unknown code, a line
    short of an item, no trailer, or a deeper line before any level-1 line."""
    lines = text.splitlines(keepends=True)
    body = [n for n, line in enumerate(lines) if line[:3] not in ("ZHV", "ZPT")]
    if change == "drop a line":
        del lines[body[-1]]
    elif change == "repeat a line":
        lines.insert(body[0], lines[body[0]])
    elif change == "unknown code":
        lines[body[-2]] = "ZZZ" + lines[body[-2]][3:]
    elif change == "no trailer":
        lines.pop()
    elif change == "short line":
        lines[body[1]] = lines[body[1]].rstrip("|\n").rsplit("|", 1)[0] + "|\n"
    else:  # a level-2 line before any level-1 line
        lines.insert(1, lines[body[1]])
        del lines[body[0] + 1]
    return "".join(lines)


class TestChangedBetweenPasses:
    @pytest.mark.parametrize("change", ["drop a line", "repeat a line", "unknown code", "no trailer", "short line",
                                        "orphan"])
    @pytest.mark.parametrize("way", ["line by line", "by blocks"])
    def test_changes_of_shape_raise(self, change: str, way: str) -> None:
        text = D0010 if way == "line by line" else D0275  # D0275: the change lands in a run of periods
        checked = READER.read(io.StringIO(text, newline="")).check()
        changed = reshaped(text, change)
        with pytest.raises(FlowFileError, match="changed between the passes") as info:
            if way == "line by line":
                list(READER.read_valid(io.StringIO(changed, newline=""), checked))
            else:
                list(data_by_blocks(io.StringIO(changed), checked.valid()))
        assert info.value.defects[0].rule == "file-changed"

    def test_defective_first_pass_refused(self) -> None:
        checked = READER.read(io.StringIO(D0010.replace("ZPT|", "ZPX|"), newline="")).check()
        with pytest.raises(FlowFileError, match="defects"):
            list(READER.read_valid(io.StringIO(D0010, newline=""), checked))


# -- by blocks: each instance's event object, with runs of leaf lines written as JSON -------------------------------

# A flow made for these tests: a leaf group with an item of every format, optional, keyed out of item order (the JSON
# members must come sorted), an unused item, and a group that occurs once; a group with no items at all.
KINDS_YAML = """\
flow: T9999
version: "001"
name: Every format in a run
groups:
  - {code: "AA1", key: roots, name: Root, parent: null, range: "1-*", items: [
      {ref: J0001, key: id, name: Id, format: "NUM(13)", presence: mandatory}]}
  - {code: "BB2", key: readings, name: Reading, parent: roots, range: "0-*", items: [
      {ref: J0002, key: z_text, name: Text, format: "CHAR(6)", presence: optional},
      {ref: J0003, key: m_int, name: Int, format: "INT(18)", presence: optional},
      {ref: J0004, key: unused_one, name: Unused, format: "CHAR(2)", presence: unused},
      {ref: J0005, key: b_flag, name: Flag, format: BOOLEAN, presence: optional},
      {ref: J0006, key: d_day, name: Day, format: DATE, presence: optional},
      {ref: J0007, key: a_when, name: When, format: DATETIME, presence: optional},
      {ref: J0008, key: t_time, name: Time, format: TIME, presence: optional},
      {ref: J0009, key: n_num, name: Num, format: "±NUM(5,2)", presence: optional}]}
  - {code: "CC3", key: note, name: Note, parent: roots, range: "0-1", items: [
      {ref: J0010, key: text, name: Text, format: "CHAR(4)", presence: mandatory}]}
  - {code: "DD4", key: markers, name: Marker, parent: roots, range: "0-*", items: []}
"""


@pytest.fixture(scope="module")
def kinds(tmp_path_factory: pytest.TempPathFactory) -> FlowFileReader:
    path = tmp_path_factory.mktemp("definitions") / "T9999001.yaml"
    path.write_text(KINDS_YAML, encoding="utf-8")
    return FlowFileReader(DefinitionSet({"T9999001": load_definition(path)}))


def _texts(kind: str) -> st.SearchStrategy[str]:
    """Valid texts of one format: mostly ones the columns write, one time in ten one they cannot (a text JSON must
    escape, a zero-padded or too large integer), so that runs go both ways."""
    if kind == "text":
        plain = st.sampled_from(["ABC", "A B", "x1", "Z", "é", "~!"])
        odd = st.text(st.characters(blacklist_characters="|", blacklist_categories=("Cs", "Cc", "Zl", "Zp")),
                      min_size=1, max_size=6) | st.sampled_from(['A"B', "A\\B", "\u00a0", "</", "\U0001f600"])
    elif kind == "int":
        plain = st.sampled_from(["0", "7", "123456789012345"]) | st.integers(1, 10**6).map(str)
        odd = st.sampled_from(["007", "00", "9007199254740993", "1234567890123456"])
    elif kind == "bool":
        return st.sampled_from(["T", "F"])
    elif kind == "date":
        return st.dates(date(1950, 1, 1), date(2199, 12, 31)).map(lambda day: day.strftime("%Y%m%d"))
    elif kind == "datetime":
        return st.datetimes(datetime(1950, 1, 1), datetime(2199, 12, 31)).map(lambda t: t.strftime("%Y%m%d%H%M%S"))
    elif kind == "time":
        return st.times().map(lambda t: t.strftime("%H%M%S"))
    else:
        return st.sampled_from(["0", "-1.5", "123.45", "-999.99", "12.3"])
    return st.integers(0, 9).flatmap(lambda n: odd if n == 0 else plain)


_READING = ("text", "int", None, "bool", "date", "datetime", "time", "num")


@st.composite
def kinds_files(draw: st.DrawFn, definition: FlowDefinition) -> str:
    """A valid T9999001 file, ZHV or pool: runs of readings whose items are often filled alike (the columns' case),
    sometimes empty in some lines only (then built line by line), with notes and markers between them."""
    root, readings, note, markers = definition.groups
    pool = draw(st.booleans())
    header = FileHeader("ZHD-POOL" if pool else "ZHV", "" if pool else "0000000001", definition.reference, "X",
                        "SYNA", "X", "SYNB", "20200101120000", test_data_flag="" if pool else "OPER",
                        terminated=not pool)
    writer = FlowFileWriter(header)
    lines = [writer.header()]
    for instance in range(draw(st.integers(1, 4))):
        tree = GroupInstance(root, (str(1000000000000 + instance),), 0)
        for group in draw(st.lists(st.sampled_from([readings, markers]), max_size=3, unique=True)):
            if group is markers:
                tree.children += [GroupInstance(markers, (), 0) for _ in range(draw(st.integers(1, 5)))]
                continue
            filled = [kind is not None and draw(st.booleans()) for kind in _READING]
            for _ in range(draw(st.integers(1, 8))):  # an item filled in some lines only, one time in twenty
                values = tuple("" if kind is None or filled[n] == (draw(st.integers(0, 19)) == 0)
                               else draw(_texts(kind)) for n, kind in enumerate(_READING))
                tree.children.append(GroupInstance(readings, values, 0))
        if draw(st.booleans()):
            tree.children.append(GroupInstance(note, ("NOTE",), 0))
        tree.children.sort(key=lambda child: child.definition.index)  # siblings in definition order
        lines.extend(writer.instance(tree))
    lines.append(writer.trailer("20200101120500"))
    return "".join(lines)


def events_both_ways(path: Path, reader: FlowFileReader) -> tuple[list[object], list[object]]:
    """Each event's canonical JSON (or the error canonicalizing raises), line by line and by blocks."""
    checked = check_file(path, reader)
    assert checked.ok, checked.describe_defects()

    def written(fragments: bool) -> list[object]:
        out: list[object] = []
        for event in file_events(path, reader, checked, as_fragments=fragments):
            try:
                out.append(canonicalize(event, known_types=True))
            except SignatureError as exc:
                out.append(exc.reason)
        return out

    return written(False), written(True)


class TestByBlocks:
    """`data_by_blocks` must make the very events `placed_by_code` makes, as canonical JSON, ids included."""

    @settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                      HealthCheck.function_scoped_fixture])
    @given(data=st.data())
    def test_every_format_in_runs(self, data: st.DataObject, kinds: FlowFileReader, tmp_path: Path) -> None:
        path = tmp_path / "T9999001.txt"
        path.write_text(data.draw(kinds_files(kinds.definitions["T9999001"])), encoding="utf-8", newline="")
        by_lines, by_blocks = events_both_ways(path, kinds)
        assert by_blocks == by_lines

    @pytest.mark.parametrize(("item", "text", "columns"), [
        (None, None, True),
        (1, "007", False), (1, "00", False), (1, "9007199254740993", False), (1, "123456789012345", True),
        (0, 'A"B', False), (0, "A\\B", False),
        (0, "é", True), (0, "", False), (7, "", False)],
        ids=lambda value: repr(value)[:20])
    def test_every_format_by_columns(self, kinds: FlowFileReader, tmp_path: Path, item: int | None,
                                     text: str | None, columns: bool) -> None:
        """A run with every format filled is written by columns, members sorted, as `to_json` gives each value;
        a text the columns cannot write in one line (`text` at `item`) sends the run line by line."""
        definition = kinds.definitions["T9999001"]
        root, readings, _note, _markers = definition.groups
        header = FileHeader("ZHV", "0000000001", "T9999001", "X", "SYNA", "X", "SYNB", "20200101120000",
                            test_data_flag="OPER")
        writer = FlowFileWriter(header)
        rows = [["A B", str(n * 10), "", "TF"[n % 2], "20240229", "20240229235959", "120000", f"-{n}.5"]
                for n in range(5)]
        if item is not None and text is not None:
            rows[3][item] = text
        tree = GroupInstance(root, ("1000000000000",), 0)
        tree.children = [GroupInstance(readings, tuple(row), 0) for row in rows]
        path = tmp_path / "T9999001.txt"
        path.write_text("".join([writer.header(), *writer.instance(tree), writer.trailer("20200101120500")]))
        checked = check_file(path, kinds)
        with open(path, encoding="utf-8") as stream:
            (instance,) = data_by_blocks(stream, checked.valid())
        run = instance.data["roots"]["readings"]
        assert (type(run) is orjson.Fragment) == columns
        by_lines, by_blocks = events_both_ways(path, kinds)
        assert by_blocks == by_lines
        if item is None:
            assert orjson.dumps(run).decode().startswith(
                '[{"a_when":"2024-02-29T23:59:59","b_flag":true,"d_day":"2024-02-29","m_int":0,"n_num":"-0.5",'
                '"t_time":"12:00:00","z_text":"A B"},{"a_when":')

    @settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                      HealthCheck.function_scoped_fixture])
    @given(text=broken_files(), newline=st.sampled_from(["\n", "\r\n", "\r"]))
    def test_any_valid_file_of_a_shipped_flow(self, text: str, newline: str, tmp_path: Path) -> None:
        """Pool or ZHV, any line ends, no final line end: whatever the first pass accepts."""
        path = tmp_path / "file.txt"
        path.write_text(text.replace("\n", newline) if "\r" not in text else text, encoding="utf-8", newline="")
        if not check_file(path, READER).ok:
            return
        by_lines, by_blocks = events_both_ways(path, READER)
        assert by_blocks == by_lines

    @pytest.mark.parametrize("path", sorted(EXAMPLES.glob("*.txt")) + sorted(SAMPLES.glob("*_*")),
                             ids=lambda path: path.name)
    def test_examples_and_real_samples(self, path: Path) -> None:
        if not check_file(path, READER).ok:
            pytest.skip("a sample the first pass rejects (its defects are tested elsewhere)")
        by_lines, by_blocks = events_both_ways(path, READER)
        assert by_blocks == by_lines

    def test_half_hourly_periods_are_written_by_columns(self, tmp_path: Path) -> None:
        """D0275's runs of 48 periods become fragments (the point of the exercise), and read back as the objects."""
        path = tmp_path / "D0275001.txt"
        path.write_text("".join(synthetic_file(DEFINITIONS["D0275001"], 3, instances=4)), encoding="utf-8")
        checked = check_file(path, READER)
        with open(path, encoding="utf-8", newline=None) as stream:
            instances = list(data_by_blocks(stream, checked.valid(), block_chars=1000))  # instances span blocks
        with open(path, encoding="utf-8", newline="") as stream:
            expected = list(READER.read_valid(stream, checked, as_objects=True))
        assert [i.content for i in instances] == [i.content for i in expected]
        for instance, plain in zip(instances, expected, strict=True):
            periods = [day["hh_periods"] for day in instance.data["mpan_cores"]["dates"]]
            assert all(type(run) is orjson.Fragment for run in periods)
            assert orjson.loads(orjson.dumps(instance.data)) == plain.data

    def test_redaction_refuses_fragments(self) -> None:
        """A fragment cannot have items taken out: redaction must fail loudly, never pass the data through."""
        checked = READER.read(io.StringIO(D0275, newline="")).check()
        instance = next(data_by_blocks(io.StringIO(D0275), checked.valid()))
        redaction = Redaction("mpan_cores.dates.hh_periods.period_metered_consumption",
                              ("mpan_cores", "dates", "hh_periods", "period_metered_consumption"), "mask")
        route = SubscriberRoute("billing", "minimised", None, {"D0275001": (redaction,)})
        with pytest.raises(TypeError, match="JSON fragment"):
            minimise({"data": instance.data}, route, "D0275001")


D0275 = "".join(synthetic_file(DEFINITIONS["D0275001"], 7, instances=2))
