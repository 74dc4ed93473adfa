"""What a user of `detfuzz fuzz` gets: campaign throughput and the time to each planted bug.

    python bench/campaign_bench.py                       # both parts, defaults below
    python bench/campaign_bench.py --only throughput --time 60
    python bench/campaign_bench.py --only planted --bug block-plain-bh --seeds 3

Everything runs through the installed `detfuzz` console script, as a user runs it, each
campaign on a fresh temporary corpus with the example cache off (so a campaign is
reproducible from its seed) and the repository's seed scenarios checked first, as a
default campaign from the checkout does.

- throughput: a campaign of `--time` seconds on the correct machine, all properties, with
  1 and with 2 workers, interleaved over `--rounds`; examples per second from the
  campaign's own summary (seed scenarios included, shrinking excluded: there is none).
- planted: for each planted bug and seed, a default campaign (all properties, every
  built-in device, default workers) until its first finding: examples and seconds to it
  (from the campaign's JSON `finding` event), the signature, and whether the rule it names
  is the bug's; the campaign is then interrupted (Ctrl-C, which still writes the summary).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from vm.planted import PLANTED_BUGS  # noqa: E402 - after the path set-up

SEEDS_DIR = ROOT / "corpora" / "seeds"


def _campaign(args: list[str], corpus: Path) -> list[str]:
    seeds = ["--seeds", str(SEEDS_DIR)] if SEEDS_DIR.is_dir() else ["--no-seeds"]
    return ["detfuzz", "fuzz", "--json", "--no-cache", "--corpus", str(corpus), *seeds, *args]


def throughput(*, workers: int, seconds: float, seed: int) -> float:
    """Examples per second of one correct-machine campaign."""
    with tempfile.TemporaryDirectory() as corpus:
        argv = _campaign(
            ["--time", f"{seconds}s", "--workers", str(workers), "--seed", str(seed)],
            Path(corpus),
        )
        done = subprocess.run(argv, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"campaign failed ({done.returncode}): {done.stderr.strip()[-300:]}")
    summary = [json.loads(line) for line in done.stdout.splitlines() if line.strip()][-1]
    return float(summary["examples"]) / float(summary["elapsed_s"])


def first_finding(bug: str, *, seed: int, limit_s: float) -> dict[str, object]:
    """Run a default campaign with `bug` planted until its first finding (or `limit_s`)."""
    with tempfile.TemporaryDirectory() as corpus:
        argv = _campaign(
            ["--planted", bug, "--seed", str(seed), "--time", f"{limit_s}s"], Path(corpus)
        )
        started = time.perf_counter()
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        assert proc.stdout is not None
        found: dict[str, object] | None = None
        for line in proc.stdout:
            event = json.loads(line)
            if event.get("event") == "finding":
                found = event
                proc.send_signal(signal.SIGINT)  # stop cleanly: the summary is still written
                break
        proc.communicate(timeout=120)
        wall = time.perf_counter() - started
    if found is None:
        return {"bug": bug, "seed": seed, "found": False, "seconds": wall}
    signature = str(found["signature"])
    rule = PLANTED_BUGS[bug].rule
    return {
        "bug": bug,
        "seed": seed,
        "found": True,
        "examples": found["examples"],
        "seconds": found["elapsed_s"],
        "signature": signature,
        "right_rule": _rule_number(signature) == rule,
    }


def _rule_number(signature: str) -> int | None:
    from fuzzer.divergence import Rule

    slug = signature.rsplit("/", 1)[-1]
    return next((rule.number for rule in Rule if rule.value == slug), None)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", choices=("throughput", "planted"), help="run one part")
    parser.add_argument("--time", type=float, default=60.0, help="seconds per throughput run")
    parser.add_argument("--rounds", type=int, default=1, help="interleaved throughput rounds")
    parser.add_argument("--bug", action="append", help="only these planted bugs (repeatable)")
    parser.add_argument("--seeds", type=int, default=1, help="campaign seeds 1..N per bug")
    parser.add_argument("--limit", type=float, default=600.0, help="seconds per planted search")
    parser.add_argument("--json", action="store_true", help="one JSON object at the end")
    args = parser.parse_args()
    env_cpus = len(os.sched_getaffinity(0))
    results: dict[str, object] = {"cpus": env_cpus}
    ok = True
    if args.only in (None, "throughput"):
        rates: dict[int, list[float]] = {1: [], 2: []}
        for round_ in range(args.rounds):
            for workers in (1, 2):
                rates[workers].append(throughput(workers=workers, seconds=args.time, seed=round_))
        medians = {w: statistics.median(r) for w, r in rates.items()}
        results["throughput"] = {str(w): r for w, r in rates.items()}
        if not args.json:
            for workers, rate in medians.items():
                print(f"correct machine, all properties, {workers} worker(s): {rate:.1f} ex/s")
            print(f"2 workers / 1 worker: {medians[2] / medians[1]:.2f}x  ({env_cpus} cpus)")
    if args.only in (None, "planted"):
        rows = []
        if not args.json:
            print(f"{'bug':26} seed {'examples':>8} {'seconds':>8}  rule  signature", flush=True)
        for bug in args.bug or sorted(PLANTED_BUGS):
            for seed in range(1, args.seeds + 1):
                row = first_finding(bug, seed=seed, limit_s=args.limit)
                rows.append(row)
                ok &= bool(row["found"]) and bool(row.get("right_rule"))
                if args.json:
                    continue
                if not row["found"]:
                    print(f"{bug:26} {seed:4} NOT FOUND in {row['seconds']:.0f} s", flush=True)
                else:
                    right = "ok" if row["right_rule"] else "WRONG"
                    print(
                        f"{bug:26} {seed:4} {row['examples']:8} {row['seconds']:8.1f}  "
                        f"{right:5} {row['signature']}",
                        flush=True,
                    )
        results["planted"] = rows
    if args.json:
        print(json.dumps(results, indent=2))
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
