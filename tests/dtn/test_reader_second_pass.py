"""`FlowFileReader.read_valid`, the second pass over a file the first pass found valid, against `read`.

It places lines by their code alone and checks nothing again, so it must yield exactly the instances `read` yields
(groups, values, line numbers, nesting) and keep each instance's lines as the event id's input; and a file that
changed since the first pass must raise, not yield other instances.
"""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bridge.dtn.model import FlowInstance, GroupInstance
from bridge.dtn.reader import FlowFileReader
from bridge.dtn.synthetic import synthetic_file
from bridge.errors import FlowFileError
from bridge.events.envelope import _content
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


class TestChangedBetweenPasses:
    @pytest.mark.parametrize("change", ["drop a line", "repeat a line", "unknown code", "no trailer", "short line",
                                        "orphan"])
    def test_changes_of_shape_raise(self, change: str) -> None:
        checked = READER.read(io.StringIO(D0010, newline="")).check()
        lines = D0010.splitlines(keepends=True)
        body = [n for n, line in enumerate(lines) if line[:3] not in ("ZHV", "ZPT")]
        if change == "drop a line":
            del lines[body[-1]]
        elif change == "repeat a line":
            lines.insert(body[0], lines[body[0]])
        elif change == "unknown code":
            lines[body[1]] = "ZZZ" + lines[body[1]][3:]
        elif change == "no trailer":
            lines.pop()
        elif change == "short line":
            lines[body[1]] = lines[body[1]].rstrip("|\n").rsplit("|", 1)[0] + "|\n"
        else:  # a level-2 line before any level-1 line
            lines.insert(1, lines[body[1]])
            del lines[body[0] + 1]
        with pytest.raises(FlowFileError, match="changed between the passes") as info:
            list(READER.read_valid(io.StringIO("".join(lines), newline=""), checked))
        assert info.value.defects[0].rule == "file-changed"

    def test_defective_first_pass_refused(self) -> None:
        checked = READER.read(io.StringIO(D0010.replace("ZPT|", "ZPX|"), newline="")).check()
        with pytest.raises(FlowFileError, match="defects"):
            list(READER.read_valid(io.StringIO(D0010, newline=""), checked))
