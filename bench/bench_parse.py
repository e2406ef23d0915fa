"""Parse benchmark: the reader's two passes against a bare `line.split('|')` loop over the same bytes.

    .venv/bin/python bench/bench_parse.py                 # quick: ~40 MB corpus, peak RSS on a 200 MB file
    .venv/bin/python bench/bench_parse.py --big-mb 1024   # the issue's 1 GB memory check

Two passes are timed, as the daemon and the CLI run them on every file: the validation pass (`check_file`: every
defect, instances discarded) and the full parse that builds every flow instance (the event pass). The corpus (D0010
and D0275, deterministic seeds) is generated from the shipped definitions into bench/out/ and reused. Targets: the
validation pass at >= 25% of the bare loop's speed; peak RSS of the validation pass < 150 MB on the 1 GB file.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bridge.dtn.definitions import load_definitions
from bridge.dtn.reader import FlowFileReader
from bridge.dtn.synthetic import synthetic_file
from bridge.inbound.flowfile import check_file, open_flow_file

OUT = Path(__file__).resolve().parent / "out"
CORPUS = "v2"  # in the cached files' names: bump when bridge/dtn/synthetic.py generates otherwise (v2: MPAN
# check digits and period counts that fit their dates, issue 13)


def make_file(reference: str, instances: int, seed: int) -> Path:
    """Generate (once) a valid file of `instances` flow instances."""
    OUT.mkdir(exist_ok=True)
    path = OUT / f"{reference}-{instances}-{seed}-{CORPUS}.txt"
    if not path.exists():
        definition = load_definitions()[reference]
        tmp = path.with_suffix(".part")
        with open(tmp, "w", encoding="utf-8", newline="") as stream:
            stream.writelines(synthetic_file(definition, seed, instances=instances, fanout=1))
        tmp.rename(path)
    return path


def count_lines(path: Path) -> int:
    with open(path, "rb") as stream:
        return sum(1 for _ in stream)


def make_big_file(reference: str, megabytes: int) -> Path:
    """A file of about `megabytes` MB: a generated block of instances repeated, with a correct trailer."""
    path = OUT / f"{reference}-{megabytes}MB-{CORPUS}.txt"
    if path.exists():
        return path
    block_path = make_file(reference, 2000, 7)
    lines = block_path.read_text().splitlines(keepends=True)
    header, body, trailer = lines[0], lines[1:-1], lines[-1]
    block = "".join(body)
    block_instances = int(trailer.split("|")[4])
    repeats = max(1, megabytes * 1_000_000 // len(block))
    tmp = path.with_suffix(".part")
    with open(tmp, "w", encoding="utf-8", newline="") as stream:
        stream.write(header)
        stream.writelines(block for _ in range(repeats))
        fields = trailer.split("|")
        fields[2] = str(len(body) * repeats % 10**10)
        fields[4] = str(block_instances * repeats)
        stream.write("|".join(fields))
    tmp.rename(path)
    return path


def bare_split(paths: list[Path]) -> float:
    """Seconds for the baseline: read the same text lines and split each on '|'."""
    start = time.perf_counter()
    for path in paths:
        with open_flow_file(path) as stream:
            for line in stream:
                line.split("|")
    return time.perf_counter() - start


def validate(paths: list[Path], reader: FlowFileReader) -> tuple[float, int]:
    """Seconds for the validation pass over every file (`check_file`, as the daemon runs it), and the flow count."""
    start = time.perf_counter()
    instances = 0
    for path in paths:
        checked = check_file(path, reader)
        assert checked.ok, checked.describe_defects()[:3]
        instances += checked.flow_count
    return time.perf_counter() - start, instances


def parse_instances(paths: list[Path], reader: FlowFileReader) -> tuple[float, int]:
    """Seconds to parse every file into flow instances (the event pass, line by line), and the instances seen."""
    start = time.perf_counter()
    instances = 0
    for path in paths:
        with open_flow_file(path) as stream:
            parse = reader.read(stream)
            for _ in parse:
                instances += 1
            assert parse.ok, parse.describe_defects()[:3]
    return time.perf_counter() - start, instances


def child_peak_rss(path: Path) -> dict[str, float]:
    """Run the validation pass over `path` in a fresh process and report its peak RSS (so that the corpus generation
    does not count)."""
    code = (
        "import json,resource,sys,time;sys.path.insert(0,sys.argv[2]);"
        "from bridge.dtn.definitions import load_definitions;from bridge.dtn.reader import FlowFileReader;"
        "from bridge.inbound.flowfile import check_file;r=FlowFileReader(load_definitions());t=time.perf_counter();"
        "p=check_file(sys.argv[1],r);"
        "print(json.dumps({'ok':p.ok,'instances':p.flow_count,'seconds':time.perf_counter()-t,"
        "'rss_mb':resource.getrusage(resource.RUSAGE_SELF).ru_maxrss/1024}))"
    )
    result = subprocess.run([sys.executable, "-c", code, str(path), str(Path(__file__).resolve().parents[1])],
                            check=True, capture_output=True, text=True)
    return json.loads(result.stdout)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--instances", type=int, default=40_000, help="D0010 flow instances in the corpus")
    parser.add_argument("--big-mb", type=int, default=200, help="size of the file for the memory check")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    reader = FlowFileReader(load_definitions())
    corpus = [make_file("D0010002", args.instances, 1), make_file("D0275001", args.instances // 20, 2)]
    size = sum(path.stat().st_size for path in corpus)
    baseline = min(bare_split(corpus) for _ in range(args.rounds))
    checked, instances = min(validate(corpus, reader) for _ in range(args.rounds))
    parsed, built = min(parse_instances(corpus, reader) for _ in range(args.rounds))
    assert built == instances, (built, instances)
    lines = sum(count_lines(path) for path in corpus)
    print(f"corpus: {len(corpus)} files, {size / 1e6:.1f} MB, {lines:,} lines, {instances:,} flow instances")
    print(f"bare split loop:             {lines / baseline:>12,.0f} lines/s  {size / 1e6 / baseline:7.1f} MB/s")
    print(f"validation pass (check):     {lines / checked:>12,.0f} lines/s  {size / 1e6 / checked:7.1f} MB/s  "
          f"{instances / checked:,.0f} flow instances/s")
    print(f"full parse (instances):      {lines / parsed:>12,.0f} lines/s  {size / 1e6 / parsed:7.1f} MB/s  "
          f"{instances / parsed:,.0f} flow instances/s")
    print(f"ratio parse+validate / bare split: {baseline / checked:.2f} (validation pass, check(); target >= 0.25)")
    print(f"ratio full parse / bare split:     {baseline / parsed:.2f} (instance-building pass, no target)")
    big = make_big_file("D0275001", args.big_mb)
    peak = child_peak_rss(big)
    print(f"peak RSS of the validation pass on {big.stat().st_size / 1e6:,.0f} MB ({peak['instances']:,} instances, "
          f"{big.stat().st_size / 1e6 / peak['seconds']:.1f} MB/s): {peak['rss_mb']:.1f} MB (target < 150 MB)")


if __name__ == "__main__":
    main()
