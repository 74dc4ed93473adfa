"""How fast the default search finds each planted bug, and how small it shrinks it.

    python bench/planted_bench.py                 # every bug, seeds 0-2
    python bench/planted_bench.py --seeds 1 --bug block-plain-bh
    python bench/planted_bench.py --json

For each planted bug and seed: the default strategy over the full built-in machine with
that one bug switched on, all six properties, as a campaign runs them (fuzzer.engine.hunt);
examples and seconds to the first detection, the signature and rule, and after shrinking
the program's size (source lines, body chunks) and the stimulus, stop and snapshot
counts. Then the correct machine over as many examples, which must give nothing.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from fuzzer.engine import hunt
from fuzzer.strategies import scenarios
from vm.planted import PLANTED_BUGS


def measure(bug: str, seed: int, *, max_examples: int, max_shrinks: int) -> dict[str, object]:
    start = time.perf_counter()
    finding = hunt(
        scenarios(planted_bugs=(bug,)),
        max_examples=max_examples,
        seed=seed,
        max_shrinks=max_shrinks,
    )
    if finding is None:
        return {"bug": bug, "seed": seed, "found": False, "seconds": time.perf_counter() - start}
    scenario = finding.scenario
    program = [line for line in scenario.program.splitlines() if line.strip()]
    return {
        "bug": bug,
        "seed": seed,
        "found": True,
        "examples": finding.examples,
        "seconds_to_first": finding.seconds_to_first,
        "seconds_with_shrink": finding.seconds_total,
        "signature": str(finding.signature),
        "rule": finding.divergence.rule.value,
        "program_lines": len(program),
        "body_chunks": sum(line.lstrip().startswith("# chunk") for line in program),
        "stimulus": len(scenario.stimulus),
        "stops": len(scenario.stops),
        "snapshots": len(scenario.snapshots),
    }


HEADER = (
    f"{'bug':26} seed {'examples':>8} {'s to 1st':>8} {'lines':>5} {'chunks':>6} "
    f"{'stim':>4} {'stops':>5} {'snaps':>5}  signature"
)


def row_line(r: dict[str, object]) -> str:
    if not r["found"]:
        return f"{r['bug']:26} {r['seed']:4} NOT FOUND ({r['seconds']:.0f} s)"
    return (
        f"{r['bug']:26} {r['seed']:4} {r['examples']:8} {r['seconds_to_first']:8.1f} "
        f"{r['program_lines']:5} {r['body_chunks']:6} {r['stimulus']:4} "
        f"{r['stops']:5} {r['snapshots']:5}  {r['signature']}"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, default=3, help="seeds 0..N-1 per bug")
    parser.add_argument("--bug", action="append", help="only these bugs (repeatable)")
    parser.add_argument("--examples", type=int, default=400, help="examples per search")
    parser.add_argument("--shrinks", type=int, default=300, help="shrink checks per finding")
    parser.add_argument(
        "--clean-examples",
        type=int,
        default=None,
        help="examples of the correct-machine run (default examples x seeds; 0 skips it)",
    )
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    warnings.simplefilter("ignore")  # Hypothesis warns about large reprs of scenarios
    if not args.json:
        print(HEADER, flush=True)
    rows = []
    for bug in args.bug or sorted(PLANTED_BUGS):
        for seed in range(args.seeds):
            rows.append(measure(bug, seed, max_examples=args.examples, max_shrinks=args.shrinks))
            if not args.json:  # a row as soon as it is measured: a long run shows progress
                print(row_line(rows[-1]), flush=True)
    clean_examples = (
        args.examples * args.seeds if args.clean_examples is None else args.clean_examples
    )
    start = time.perf_counter()
    clean = (
        hunt(scenarios(), max_examples=clean_examples, seed=99, shrink=False)
        if clean_examples
        else None
    )
    false_positive = {
        "examples": clean_examples,
        "divergences": 0 if clean is None else 1,
        "signature": None if clean is None else str(clean.signature),
        "seconds": time.perf_counter() - start,
    }
    if args.json:
        print(json.dumps({"bugs": rows, "correct_machine": false_positive}, indent=2))
    elif clean_examples:
        fp = false_positive
        print(
            f"correct machine: {fp['examples']} examples, {fp['divergences']} divergence(s)"
            f"{'' if fp['signature'] is None else ': ' + fp['signature']} ({fp['seconds']:.0f} s)"
        )
    found_all = all(r["found"] for r in rows)
    return 0 if found_all and false_positive["divergences"] == 0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
