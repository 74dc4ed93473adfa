"""Cost of the state digest (vm.digest) on a large RAM: it should follow dirtied memory.

    python bench/digest_bench.py [--ram-mib 16] [--runs 9] [--json [PATH]]

Cases, each timed with time.perf_counter around the digest call alone (building machines,
filling and dirtying RAM are excluded), median (min-max) of --runs runs:

- cold, RAM all zero: the first digest of a fresh machine (it scans all of RAM once).
- cold, RAM all non-zero: the same after filling RAM with random bytes via bus.write_bytes.
- warm, 0 / 1 / all pages dirty: a digest of the filled machine after nothing, after one
  4-byte write to one page, and after rewriting all of RAM (every page dirty and changed).
- uncached: digest(m, cached=False) of the filled machine, the from-scratch reference.

The ratio "all dirty / 1 dirty" is the point: with the page cache a digest costs O(pages
written since the last one), so it approaches the page count (4096 for 16 MiB) once the
fixed per-digest cost (CPU, clock and device fields, the ROM check) is small beside it.
Every cached result is checked against the uncached digest; a mismatch exits 1.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
REPO_ROOT = Path(os.environ.get("DETFUZZ_ROOT", BENCH_DIR.parent)).resolve()
if sys.path[0] != str(REPO_ROOT):  # the work tree first: an installed copy must not win
    sys.path.insert(0, str(REPO_ROOT))

from vm import Machine, MachineConfig  # noqa: E402
from vm.digest import digest  # noqa: E402
from vm.memory import PAGE_SIZE, RAM_BASE  # noqa: E402


def _host_info() -> dict[str, Any]:
    model = platform.processor() or "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "cpu": model,
        "cpus": os.cpu_count(),
        "python": sys.version.split()[0],
        "loadavg": os.getloadavg(),
    }


def _timed(fn: Callable[[], bytes]) -> tuple[float, bytes]:
    start = time.perf_counter()
    result = fn()
    return time.perf_counter() - start, result


class Bench:
    """One machine size; every case appends its seconds to `times[case]`."""

    def __init__(self, ram_size: int, seed: int) -> None:
        self.ram_size = ram_size
        self.pages = ram_size // PAGE_SIZE
        self.rng = random.Random(seed)
        self.times: dict[str, list[float]] = {}
        self.problems: list[str] = []

    def machine(self, *, filled: bool) -> Machine:
        m = Machine(MachineConfig(ram_size=self.ram_size))
        if filled:
            self.fill(m)
        return m

    def fill(self, m: Machine) -> None:
        """Rewrite all of RAM with random bytes (every page dirty, and almost surely changed)."""
        m.bus.write_bytes(RAM_BASE, self.rng.randbytes(self.ram_size))

    def record(self, case: str, m: Machine, fn: Callable[[], bytes]) -> None:
        seconds, result = _timed(fn)
        self.times.setdefault(case, []).append(seconds)
        if result != digest(m, cached=False):
            self.problems.append(f"{case}: cached digest differs from the uncached one")

    def run_round(self) -> None:
        cold_zero = self.machine(filled=False)
        self.record("cold, RAM all zero", cold_zero, lambda: digest(cold_zero))
        m = self.machine(filled=True)
        self.record("cold, RAM all non-zero", m, lambda: digest(m))
        self.record("warm, 0 pages dirty", m, lambda: digest(m))
        page = self.rng.randrange(self.pages)
        m.bus.write_bytes(RAM_BASE + page * PAGE_SIZE + 8, self.rng.randbytes(4))
        self.record("warm, 1 page dirty", m, lambda: digest(m))
        self.fill(m)
        self.record(f"warm, all {self.pages} pages dirty", m, lambda: digest(m))
        self.record("uncached (from scratch)", m, lambda: digest(m, cached=False))


def _ms(values: list[float]) -> str:
    return (
        f"{statistics.median(values) * 1e3:8.3f} ms ({min(values) * 1e3:.3f}-"
        f"{max(values) * 1e3:.3f})"
    )


def _report(bench: Bench, runs: int) -> dict[str, Any]:
    host = _host_info()
    print(
        f"\ndigest of a {bench.ram_size >> 20} MiB machine ({bench.pages} pages), {runs} runs "
        f"each; {host['cpu']}, {host['cpus']} CPUs, Python {host['python']}, "
        f"loadavg {host['loadavg'][0]:.2f} at the end (1-min)"
    )
    header = f"{'case':<30} {'median (min-max)':>30}"
    print(header)
    print("-" * len(header))
    for case, values in bench.times.items():
        print(f"{case:<30} {_ms(values):>30}")
    one = statistics.median(bench.times["warm, 1 page dirty"])
    every = statistics.median(bench.times[f"warm, all {bench.pages} pages dirty"])
    print(f"\nall pages dirty / 1 page dirty: {every / one:.0f}x (medians)")
    for problem in bench.problems:
        print(f"BAD {problem}")
    return {
        "ram_size": bench.ram_size,
        "pages": bench.pages,
        "runs": runs,
        "host": host,
        "seconds": bench.times,
        "ratio_all_dirty_to_one_dirty": every / one,
        "problems": bench.problems,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description="Time vm.digest on a large RAM.")
    parser.add_argument("--ram-mib", type=int, default=16, help="RAM size in MiB (16)")
    parser.add_argument("--runs", type=int, default=9, help="runs per case (9)")
    parser.add_argument("--seed", type=int, default=1, help="seed of the RAM contents")
    parser.add_argument(
        "--json", nargs="?", const="-", metavar="PATH", help="also write JSON (alone: stdout)"
    )
    args = parser.parse_args()
    bench = Bench(args.ram_mib << 20, args.seed)
    for _ in range(args.runs):
        bench.run_round()
    summary = _report(bench, args.runs)
    if args.json:
        text = json.dumps(summary, indent=2)
        if args.json == "-":
            print(text)
        else:
            Path(args.json).write_text(text + "\n")
            print(f"JSON written to {args.json}")
    return 1 if bench.problems else 0


if __name__ == "__main__":
    sys.exit(main())
