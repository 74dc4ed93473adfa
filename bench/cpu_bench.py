"""CPU speed of detfuzz's emulator next to two baselines, on bench/prog.S.

    python bench/cpu_bench.py [--iters 1350] [--rounds 5]
                              [--engines detfuzz,unicorn_hook,py_decode] [--json [PATH]]

Every (round, engine) pair runs in a fresh subprocess, so no engine inherits another's
caches or heap. Rounds are interleaved (round 1 runs every engine, then
round 2, ...) and the engine order rotates each round, so slow drift of the shared host
hits all engines alike. Inside the subprocess only the emulation is timed
(time.perf_counter around the run call): interpreter start, imports, building the machine
and loading the program are excluded, lazy decoding or translation is included.

Every run is checked against bench/reference.py: a0, the exact instruction count and the
UART bytes. A wrong run is reported and makes the exit status 1; an engine that cannot be
imported is reported once and makes it 2 (the other engines still run).

Each worker also times a bare CPython loop right before and right after its run: the
loop perf-anchors.md quotes for its host (43-46 M iterations/s). The "normalized" figures
scale each run by it, which removes most of the host's drift and the difference between
this host and the anchor host (see README.md for how far that holds).
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

from baselines import DecodeInterpreter, UnicornHookBaseline
from build import build_prog
from reference import Expected, compute_cached

BENCH_DIR = Path(__file__).resolve().parent
# The detfuzz work tree to measure; DETFUZZ_ROOT points the benchmark at another checkout.
REPO_ROOT = Path(os.environ.get("DETFUZZ_ROOT", BENCH_DIR.parent)).resolve()
ENGINES = ("detfuzz", "unicorn_hook", "py_decode")
RESET_VECTOR_INSNS = 6  # detfuzz boots through QEMU's reset vector at 0x1000
BUDGET_SLACK = 4096  # past the expected end: a count bug shows as a wrong count, not a stop

# perf-anchors.md, measured on prog_1350 (20 M instructions): (median, min, max) MIPS.
ANCHORS: dict[str, tuple[float, float, float]] = {
    "unicorn_hook": (3.58, 3.45, 3.68),
    "py_decode": (2.43, 2.37, 2.51),
}
ANCHOR_CALIB = 44.5  # M iterations/s of the bare loop on the anchor host (43-46)
CALIB_ITERATIONS = 3_000_000  # about 0.1-0.3 s


# --- worker side: one engine, one run, one JSON line on stdout ---


def repo_on_path() -> None:
    """Put the detfuzz work tree first on sys.path (an installed copy must not win)."""
    if sys.path[0] != str(REPO_ROOT):
        sys.path.insert(0, str(REPO_ROOT))


def import_detfuzz() -> tuple[ModuleType, Callable[..., Any]]:
    """Import detfuzz's ``vm`` package from this work tree: (vm, vm.loader.load_program).

    Raises ImportError if the package (or the API used here) is missing.
    """
    repo_on_path()
    vm = importlib.import_module("vm")
    loader = importlib.import_module("vm.loader")
    for name in ("Machine", "MachineConfig", "StopReason"):
        if not hasattr(vm, name):
            raise ImportError(f"vm has no {name} (vm found at {getattr(vm, '__path__', '?')})")
    return vm, loader.load_program


def machine_icount(machine: Any) -> int:
    """Instructions since reset, reset vector included.

    The agreed API is ``machine.icount``; the machine as first written exposes it as
    ``machine.cpu.icount``, so either is accepted.
    """
    icount = getattr(machine, "icount", None)
    if icount is None:
        icount = machine.cpu.icount
    return icount() if callable(icount) else icount


def _run_baseline(engine: str, iters: int, budget: int) -> dict[str, Any]:
    built = build_prog(iters)  # cached: the parent built it already
    image = built.bin_bytes()
    if engine == "unicorn_hook":
        result = UnicornHookBaseline(image, entry=built.entry, halt=built.halt).run()
    else:
        result = DecodeInterpreter(image, entry=built.entry).run(budget)
    return {
        "a0": result.a0,
        "count": result.count,
        "executed": result.count,
        "uart": result.uart.hex(),
        "seconds": result.seconds,
    }


def _run_detfuzz(iters: int, budget: int) -> dict[str, Any]:
    try:
        vm, load_program = import_detfuzz()
    except ImportError as exc:
        return {"unavailable": f"cannot import detfuzz's vm package: {exc!r}"}

    data = build_prog(iters).elf_bytes()
    machine = vm.Machine(vm.MachineConfig(ram_size=1 << 20))
    load_program(machine, data)
    start = time.perf_counter()
    result = machine.run(budget)
    seconds = time.perf_counter() - start
    out: dict[str, Any] = {
        "a0": machine.cpu.x[10],
        "count": machine_icount(machine) - RESET_VECTOR_INSNS,
        "executed": result.executed,
        "uart": machine.console_output().hex(),
        "seconds": seconds,
        "reason": str(result.reason),
    }
    if result.reason != vm.StopReason.FINISHER_PASS:
        out["error"] = f"stopped with {result.reason}, not FINISHER_PASS"
    return out


def calib_loop(limit: int = CALIB_ITERATIONS) -> float:
    """M iterations/s of the bare loop perf-anchors.md quotes as its host's ceiling."""
    n = 0
    start = time.perf_counter()
    while n < limit:
        n += 1
    return n / (time.perf_counter() - start) / 1e6


def worker(engine: str, iters: int, budget: int) -> int:
    # The host's speed drifts by 2-3x within seconds (see README.md), so the calibration
    # loop runs right before and right after the timed run, in the same process.
    calib_before = calib_loop()
    try:
        if engine == "detfuzz":
            out = _run_detfuzz(iters, budget)
        else:
            out = _run_baseline(engine, iters, budget)
    except Exception as exc:  # reported to the parent, which keeps going
        out = {"error": f"{type(exc).__name__}: {exc}"}
    out["calib"] = (calib_before + calib_loop()) / 2
    print(json.dumps(out))
    return 0


# --- parent side ---


@dataclass(slots=True)
class EngineRuns:
    """The good runs of one engine, and what went wrong with the others."""

    engine: str
    mips: list[float] = field(default_factory=list)
    seconds: list[float] = field(default_factory=list)
    calib: list[float] = field(default_factory=list)  # bare-loop M/s around each run
    bad: list[str] = field(default_factory=list)
    unavailable: str | None = None

    @property
    def normalized(self) -> list[float]:
        """MIPS scaled to the anchor host: mips * anchor bare loop / this run's bare loop."""
        return [m * ANCHOR_CALIB / c for m, c in zip(self.mips, self.calib, strict=True)]

    def summary(self) -> dict[str, Any]:
        d: dict[str, Any] = {"engine": self.engine, "runs": len(self.mips), "bad": self.bad}
        if self.unavailable:
            d["unavailable"] = self.unavailable
        if self.mips:
            norm = self.normalized
            d |= {
                "mips_median": statistics.median(self.mips),
                "mips_min": min(self.mips),
                "mips_max": max(self.mips),
                "normalized_median": statistics.median(norm),
                "normalized_min": min(norm),
                "normalized_max": max(norm),
                "mips_all": self.mips,
                "normalized_all": norm,
                "calib_all": self.calib,
                "seconds_all": self.seconds,
            }
        return d


def _spawn(engine: str, iters: int, budget: int, timeout: float) -> dict[str, Any]:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", engine]
    cmd += ["--iters", str(iters), "--budget", str(budget)]
    try:
        proc = subprocess.run(
            cmd, capture_output=True, text=True, timeout=timeout, check=False, cwd=REPO_ROOT
        )
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {timeout:.0f} s"}
    lines = proc.stdout.strip().splitlines()
    try:
        return json.loads(lines[-1])
    except (IndexError, json.JSONDecodeError):
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-5:]
        return {"error": f"worker exited {proc.returncode}: " + " | ".join(tail)}


def _verify(engine: str, out: dict[str, Any], expected: Expected) -> list[str]:
    problems = []
    if out["a0"] != expected.a0:
        problems.append(f"a0 0x{out['a0']:08x} != 0x{expected.a0:08x}")
    if out["count"] != expected.count:
        problems.append(f"count {out['count']:,} != {expected.count:,}")
    if bytes.fromhex(out["uart"]) != expected.uart:
        problems.append(f"uart {bytes.fromhex(out['uart'])!r} != {expected.uart!r}")
    if engine == "detfuzz" and out["executed"] != expected.count + RESET_VECTOR_INSNS:
        problems.append(f"run() executed {out['executed']:,} != count + {RESET_VECTOR_INSNS}")
    return problems


def _host_info() -> dict[str, Any]:
    model = platform.processor() or "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        import unicorn

        unicorn_version = unicorn.__version__
    except ImportError:
        unicorn_version = None
    return {
        "cpu": model,
        "cpus": os.cpu_count(),
        "python": sys.version.split()[0],
        "python_executable": sys.executable,
        "unicorn": unicorn_version,
        "loadavg": os.getloadavg(),
    }


def _stats(values: list[float]) -> str:
    """'median (min-max)' with three significant digits."""
    return f"{statistics.median(values):.3g} ({min(values):.3g}-{max(values):.3g})"


def _report(iters: int, expected: Expected, results: list[EngineRuns]) -> dict[str, Any]:
    host = _host_info()
    print(
        f"\nprog_{iters}: {expected.count:,} instructions, a0=0x{expected.a0:08x}; "
        f"{host['cpu']}, {host['cpus']} CPUs, Python {host['python']}, "
        f"loadavg {host['loadavg'][0]:.2f} at the end (1-min)"
    )
    header = (
        f"{'engine':<13} {'MIPS median (min-max)':>23} {'runs':>4}  "
        f"{'normalized':>20}  {'anchor':>18}  {'raw dev':>7} {'norm dev':>8}"
    )
    print(header)
    print("-" * len(header))
    summary: dict[str, Any] = {"iters": iters, "count": expected.count, "host": host}
    summary["engines"] = {}
    for runs in results:
        s = runs.summary()
        summary["engines"][runs.engine] = s
        if not runs.mips:
            why = runs.unavailable or "; ".join(runs.bad) or "no runs"
            print(f"{runs.engine:<13} {'—':>23}  {why}")
            continue
        line = f"{runs.engine:<13} {_stats(runs.mips):>23} {len(runs.mips):>4}"
        line += f"  {_stats(runs.normalized):>20}"
        if runs.engine in ANCHORS:
            a_med, a_lo, a_hi = ANCHORS[runs.engine]
            raw_dev = s["mips_median"] / a_med - 1
            norm_dev = s["normalized_median"] / a_med - 1
            s["anchor"] = {
                "median": a_med,
                "min": a_lo,
                "max": a_hi,
                "deviation_raw": raw_dev,
                "deviation_normalized": norm_dev,
            }
            line += f"  {a_med:>6.3g} ({a_lo:.3g}-{a_hi:.3g})  {raw_dev:>+7.0%} {norm_dev:>+8.0%}"
        if runs.bad:
            line += f"  ({len(runs.bad)} BAD)"
        print(line)

    calib = [c for r in results for c in r.calib]
    if calib:
        print(
            f"\nnormalized = MIPS x {ANCHOR_CALIB} / (bare `while n < limit: n += 1` M/s "
            f"measured around that run; {_stats(calib)} here, 43-46 on the anchor host)."
        )

    by_name = {r.engine: r for r in results}
    det = by_name.get("detfuzz")
    ratios: dict[str, dict[str, float]] = {}
    if det and det.mips:
        for base in ANCHORS:
            other = by_name.get(base)
            if other and other.mips:
                raw = statistics.median(det.mips) / statistics.median(other.mips)
                norm = statistics.median(det.normalized) / statistics.median(other.normalized)
                ratios[f"detfuzz/{base}"] = {"raw": raw, "normalized": norm}
                print(f"detfuzz / {base}: {raw:.2f}x raw, {norm:.2f}x normalized (medians)")
    summary["ratios"] = ratios
    for runs in results:
        for problem in runs.bad:
            print(f"BAD {runs.engine}: {problem}")
    return summary


def main() -> int:
    parser = argparse.ArgumentParser(
        description="Time detfuzz's emulator and the baselines on bench/prog.S."
    )
    parser.add_argument("--iters", type=int, default=1350, help="ITERS of prog.S (1350: 20 M)")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--engines", default=",".join(ENGINES))
    parser.add_argument(
        "--json",
        nargs="?",
        const="-",
        metavar="PATH",
        help="also write the results as JSON to PATH (to stdout if no PATH)",
    )
    parser.add_argument("--timeout", type=float, default=900.0, help="per run, seconds")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--budget", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.worker:
        return worker(args.worker, args.iters, args.budget)

    engines = [e.strip() for e in args.engines.split(",") if e.strip()]
    unknown = set(engines) - set(ENGINES)
    if unknown:
        parser.error(f"unknown engine(s) {sorted(unknown)}; choose from {ENGINES}")
    if args.rounds < 1:
        parser.error("--rounds must be >= 1")

    built = build_prog(args.iters)
    expected = compute_cached(args.iters)
    budget = expected.count + RESET_VECTOR_INSNS + BUDGET_SLACK
    print(
        f"{built.elf.relative_to(BENCH_DIR)}: {expected.count:,} instructions expected; "
        f"{args.rounds} rounds of {', '.join(engines)}"
    )

    runs = {e: EngineRuns(e) for e in engines}
    for rnd in range(args.rounds):
        # Rotate the order each round so no engine always runs first (or right after
        # the heaviest one).
        order = engines[rnd % len(engines) :] + engines[: rnd % len(engines)]
        for engine in order:
            r = runs[engine]
            if r.unavailable:
                continue
            out = _spawn(engine, args.iters, budget, args.timeout)
            if "unavailable" in out:
                r.unavailable = out["unavailable"]
                print(f"  {engine}: UNAVAILABLE: {r.unavailable}", flush=True)
                continue
            problems = [out["error"]] if "error" in out else []
            if "a0" in out:
                problems += _verify(engine, out, expected)
            if problems:
                r.bad.append(f"round {rnd + 1}: " + "; ".join(problems))
                print(f"  round {rnd + 1} {engine}: BAD: {'; '.join(problems)}", flush=True)
                continue
            mips = out["executed"] / out["seconds"] / 1e6
            r.mips.append(mips)
            r.seconds.append(out["seconds"])
            r.calib.append(out["calib"])
            print(
                f"  round {rnd + 1} {engine:<13} {out['seconds']:8.3f} s {mips:8.3f} MIPS"
                f"  (bare loop {out['calib']:.1f} M/s)",
                flush=True,
            )

    summary = _report(args.iters, expected, [runs[e] for e in engines])
    if args.json:
        text = json.dumps(summary, indent=2)
        if args.json == "-":
            print(text)
        else:
            Path(args.json).write_text(text + "\n")
            print(f"JSON written to {args.json}")

    if any(r.bad for r in runs.values()):
        return 1
    if any(r.unavailable for r in runs.values()):
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
