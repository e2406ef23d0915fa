"""Where a build worker's time goes: CPU per event of each step of the inbound build stage on one D0275 file.

The steps are cumulative: the second pass (file_events, as the build workers run it: runs of lines as JSON
fragments), then governance routing and RFC 8785 bytes, then the whole stage signed (`built_messages`); beside them
the bare JWS of one canonical event (ES256, the default, or --alg EdDSA), and the stage's share as one of two
workers when the other runs at the same time (on a machine whose two CPUs share more than they say, that costs more
per event than one alone).

Run: .venv/bin/python bench/bench_build.py [--instances N] [--alg ES256|EdDSA]. The figures are CPU seconds
(process_time), best of --repeat runs; on a shared machine they still move by tens of percent between minutes.
"""

from __future__ import annotations

import argparse
import multiprocessing
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import bench_pipeline  # the pipeline benchmark's corpus and configuration: the same files, the same rules

from bridge.adapters.spool import sha256_of
from bridge.config import load_config
from bridge.dtn.reader import FlowFileReader
from bridge.dtn.valid import ValidFile
from bridge.inbound.build import built_messages
from bridge.inbound.flowfile import check_file, file_events
from bridge.rules import EventRouter, RuleSet
from bridge.service import load_rules
from bridge.signing import Signer, canonicalize
from bridge.signing.jws import ALG_EDDSA, ALG_ES256, DEFAULT_ALGORITHM


class Stage:
    """One D0275 bench file, checked once, and what the build stage needs to run over it again and again."""

    def __init__(self, instances: int, alg: str) -> None:
        definitions = bench_pipeline.definitions()
        self.path = bench_pipeline.make_file("D0275001", instances, 10_000)
        self.reader = FlowFileReader(definitions)
        self.valid: ValidFile = check_file(self.path, self.reader).valid()
        self.sha256 = sha256_of(self.path)
        self.signer = Signer.generate(alg)
        config = load_config(bench_pipeline.write_config(Path(tempfile.mkdtemp()), ".bench-build"))
        self.rules: RuleSet = load_rules(config, definitions)

    def events(self) -> int:
        return sum(1 for _ in file_events(self.path, self.reader, self.valid, self.sha256, as_fragments=True))

    def routed_and_canonical(self) -> int:
        route = EventRouter("inbound", self.rules)
        return sum(len(canonicalize(route(event).outputs[0].event, known_types=True))
                   for event in file_events(self.path, self.reader, self.valid, self.sha256, as_fragments=True))

    def built(self, share: tuple[int, int] = (0, 1)) -> int:
        return sum(1 for _ in built_messages(self.path, self.valid, self.sha256, reader=self.reader,
                                             rules=self.rules, sign=self.signer.signed_json, share=share))


def cpu_per_event(run: Callable[[], object], events: int, repeat: int) -> float:
    """Best CPU µs per event over `repeat` runs."""
    best = float("inf")
    for _ in range(repeat):
        start = time.process_time()
        run()
        best = min(best, time.process_time() - start)
    return best / events * 1e6


def _share_worker(instances: int, alg: str, part: int, repeat: int,
                  results: multiprocessing.Queue[tuple[int, float]]) -> None:
    stage = Stage(instances, alg)
    own = stage.built((part, 2))
    results.put((own, cpu_per_event(lambda: stage.built((part, 2)), own, repeat)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--instances", type=int, default=5_000, help="flow instances in the D0275 file")
    parser.add_argument("--repeat", type=int, default=3, help="runs of each step; the best counts")
    parser.add_argument("--alg", choices=(ALG_ES256, ALG_EDDSA), default=DEFAULT_ALGORITHM, help="signing algorithm")
    args = parser.parse_args()
    stage = Stage(args.instances, args.alg)
    n = stage.valid.flow_count
    canonical = canonicalize(next(iter(file_events(stage.path, stage.reader, stage.valid, as_fragments=True))),
                             known_types=True)
    print(f"D0275001, {n:,} flow instances, {stage.path.stat().st_size / n:,.0f} bytes of file and "
          f"{len(canonical):,} bytes of canonical JSON per event")
    second_pass = cpu_per_event(stage.events, n, args.repeat)
    canonical_too = cpu_per_event(stage.routed_and_canonical, n, args.repeat)
    whole = cpu_per_event(stage.built, n, args.repeat)
    sign = cpu_per_event(lambda: [stage.signer.signed_json(canonical) for _ in range(2_000)], 2_000, args.repeat)
    print(f"second pass (file_events, fragments):       {second_pass:7.1f} µs per event")
    print(f"  + governance routing and RFC 8785 bytes:   {canonical_too:7.1f} µs per event")
    print(f"  + signed: the whole stage (built_messages): {whole:7.1f} µs per event")
    print(f"bare JWS ({args.alg:5}) of one canonical event:     {sign:7.1f} µs")
    results: multiprocessing.Queue[tuple[int, float]] = multiprocessing.Queue()
    workers = [multiprocessing.Process(target=_share_worker, args=(args.instances, args.alg, part, args.repeat,
                                                                      results))
               for part in (0, 1)]
    for worker in workers:
        worker.start()
    shares = [results.get() for _ in workers]
    for worker in workers:
        worker.join()
    both = sum(own * cost for own, cost in shares) / n
    print(f"two workers at once, each its share:         {both:7.1f} µs per event in all "
          f"({both / whole:.2f}x the stage alone)")


if __name__ == "__main__":
    main()
