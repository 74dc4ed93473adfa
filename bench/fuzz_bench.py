"""How fast detfuzz checks scenarios, and what all the properties cost next to one run.

    python bench/fuzz_bench.py            # 150 scenarios, ~1 minute
    python bench/fuzz_bench.py --quick    # 40 scenarios
    python bench/fuzz_bench.py --json

1. Throughput: scenarios drawn by the default strategy (the full built-in machine, the
   correct one) and checked with all six properties, as a campaign does: checks per second.
2. Cost of the properties: for each scenario, one plain run (mode none, the scenario's
   budget, no samples) against the full check (record, record again, none, replay,
   replay with stops, replays from snapshots, seeks), side by side in one process, each
   timed on the same scenario. The ratio of the sums is the figure (goal: at most 8x).
3. Localisation: for scenarios that diverge (planted bugs), the check with localisation
   against without, and the target runs the localisation took.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from fuzzer.engine import hunt
from fuzzer.heap import settle_heap
from fuzzer.properties import check
from fuzzer.scenario import Scenario
from fuzzer.strategies import scenarios
from vm.replay import ReplayMode
from vm.trace import BuiltinTarget

LOCALISED_BUGS = (
    "rtc-unlogged-clock",
    "stale-io-icount",
    "block-plain-bh",
    "uart-rx-timeout-realtime",
)


def draw(count: int, seed: int) -> list[Scenario]:
    """`count` scenarios of the default strategy, the same for a given seed."""
    drawn: list[Scenario] = []
    hunt(
        scenarios(),
        max_examples=count,
        seed=seed,
        shrink=False,
        on_example=lambda scenario, result: drawn.append(scenario),
    )
    return drawn


def time_plain(scenario: Scenario) -> float:
    spec = scenario.trace_run(
        ReplayMode.NONE, samples=(), stops=(), snapshots=(), seeks=(), snapshot_every=None
    )
    start = time.perf_counter()
    BuiltinTarget().run(spec)
    return time.perf_counter() - start


def time_check(scenario: Scenario, *, localise: bool) -> tuple[float, int, int]:
    start = time.perf_counter()
    result = check(scenario, localise_divergences=localise)
    return time.perf_counter() - start, result.runs, len(result.divergences)


def localised(bugs: tuple[str, ...], seed: int) -> list[dict[str, object]]:
    rows = []
    for bug in bugs:
        finding = hunt(scenarios(planted_bugs=(bug,)), max_examples=300, seed=seed, shrink=False)
        if finding is None:
            rows.append({"bug": bug, "found": False})
            continue
        without, runs_without, _ = time_check(finding.scenario, localise=False)
        with_loc, runs_with, _ = time_check(finding.scenario, localise=True)
        rows.append(
            {
                "bug": bug,
                "found": True,
                "check_s": without,
                "localised_s": with_loc,
                "extra_runs": runs_with - runs_without,
            }
        )
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="40 scenarios, two bugs")
    parser.add_argument("--count", type=int, default=None, help="scenarios to check")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args()
    count = args.count or (40 if args.quick else 150)

    drawn = draw(count, args.seed)
    # As a campaign worker does once it has built what it keeps (fuzzer.heap); here what
    # is kept is the drawn scenarios and the Hypothesis run that drew them.
    settle_heap()
    plain, full, runs, found = [], [], [], 0
    start = time.perf_counter()
    for scenario in drawn:
        plain.append(time_plain(scenario))
        seconds, made, divergences = time_check(scenario, localise=False)
        full.append(seconds)
        runs.append(made)
        found += divergences
    wall = time.perf_counter() - start
    ratio = sum(full) / sum(plain)
    bugs = LOCALISED_BUGS[:2] if args.quick else LOCALISED_BUGS
    loc = localised(bugs, args.seed)
    figures = {
        "scenarios": len(drawn),
        "checks_per_s": len(drawn) / sum(full),
        "median_check_ms": 1000 * statistics.median(full),
        "median_plain_ms": 1000 * statistics.median(plain),
        "properties_cost_ratio": ratio,
        "median_runs_per_check": statistics.median(runs),
        "divergences_on_correct_machine": found,
        "wall_s": wall,
        "localisation": loc,
    }
    if args.json:
        print(json.dumps(figures, indent=2))
        return 0 if found == 0 else 1
    print(f"1. throughput: {len(drawn)} scenarios of the default strategy, all six properties")
    rate, median = figures["checks_per_s"], figures["median_check_ms"]
    print(f"   {rate:.1f} checks/s; median check {median:.1f} ms,")
    print(f"   median target runs per check {figures['median_runs_per_check']}")
    print(f"   divergences on the correct machine: {found}")
    print("2. cost of all properties against one plain run of the same scenario")
    print(
        f"   median plain run {figures['median_plain_ms']:.1f} ms; sum(check)/sum(plain) = "
        f"{ratio:.2f}x (goal <= 8x)"
    )
    print("3. localisation (planted bugs, first divergent scenario of a 300-example hunt)")
    for row in loc:
        if not row["found"]:
            print(f"   {row['bug']:26} not found")
            continue
        print(
            f"   {row['bug']:26} check {1000 * row['check_s']:.0f} ms, localised "
            f"{1000 * row['localised_s']:.0f} ms (+{row['extra_runs']} target runs)"
        )
    return 0 if found == 0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
