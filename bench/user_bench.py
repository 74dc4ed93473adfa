"""Speed of detfuzz as a user meets it, start-up and translation included.

    python bench/user_bench.py [--only cli|fresh] [--iters 1350] [--cli-runs 5]
                               [--seed 1] [--fresh-procs 5] [--json [PATH]]

Two measurements:

``cli``
    Wall time of the whole ``detfuzz run bench/build/prog_<iters>.elf`` process (the
    console script; ``python -m fuzzer.cli run`` when it is not installed), several times.
    The MIPS figure divides the instructions the guest runs (reference count + 6 reset
    vector instructions) by that wall time, so interpreter start-up, imports and loading
    are all in it. ``python -c pass`` is timed too, as the floor of any Python CLI.

``fresh``
    A short program nobody has run before: about 3000 instructions of random,
    straight-line-ish RV32IM with a few short bounded loops (fixed seed), assembled with
    detfuzz's own assembler (``vm.asm.assemble``; GNU as if that does not import). Each of
    several fresh processes runs it on 6 fresh Machines one after another. Run 1 pays for
    decoding/translation; runs 2-6 show what a cache of translations shared between
    Machines saves (if there is none, they cost the same as run 1). Every run is checked
    against the baseline interpreter and Unicorn: same a0, icount = their count + 6.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from baselines import RAM_BASE, DecodeInterpreter, UnicornHookBaseline
from build import BUILD_DIR, assemble, build_prog
from cpu_bench import REPO_ROOT, RESET_VECTOR_INSNS, import_detfuzz, machine_icount, repo_on_path
from reference import compute_cached

FRESH_RUNS = 6  # Machines per process: run 1 is cold, runs 2-6 may reuse translations
FRESH_SLACK = 4096

# Registers the generator may write. s0 holds the scratch base and s11 the loop counter,
# so neither is ever a destination; sp/gp/tp are left alone out of habit.
# fmt: off
DEST_REGS = (
    "ra", "t0", "t1", "t2", "s1", "a0", "a1", "a2", "a3", "a4", "a5", "a6", "a7",
    "s2", "s3", "s4", "s5", "s6", "s7", "s8", "s9", "s10", "t3", "t4", "t5", "t6",
)
SRC_REGS = (*DEST_REGS, "zero")
R_OPS = (
    "add", "sub", "sll", "slt", "sltu", "xor", "srl", "sra", "or", "and",
    "mul", "mulh", "mulhsu", "mulhu", "div", "divu", "rem", "remu",
)
I_OPS = ("addi", "slti", "sltiu", "xori", "ori", "andi")
SHIFT_OPS = ("slli", "srli", "srai")
LOADS = {"lw": 4, "lh": 2, "lhu": 2, "lb": 1, "lbu": 1}
STORES = {"sw": 4, "sh": 2, "sb": 1}
BRANCHES = ("beq", "bne", "blt", "bge", "bltu", "bgeu")
# fmt: on
SCRATCH = RAM_BASE + 0x1_0000  # zeroed RAM well past the code: its own pages
FINISHER = 0x10_0000


# --- the fresh program ---


def generate_fresh_program(seed: int, target: int = 3000) -> str:
    """Random RV32IM source of about ``target`` static instructions; ends at the finisher.

    Only plain instructions, labels and the pseudo-ops li, bnez and j are used, so both
    GNU as and detfuzz's assembler take it. Memory accesses stay
    inside a scratch area that is not part of the image (RAM starts zeroed), which keeps
    the image pure code and lets the two assemblers' outputs be compared byte for byte.
    """
    rng = random.Random(seed)
    lines: list[str] = [".text", ".globl _start", "_start:", f"    li s0, 0x{SCRATCH:08x}"]
    # A running estimate of the static size (li counted as 2): the size is only a target.
    static = 1
    for reg in DEST_REGS:  # every register starts with a random 32-bit value
        lines.append(f"    li {reg}, 0x{rng.getrandbits(32):08x}")
        static += 2
    labels = 0

    def alu() -> str:
        kind = rng.random()
        rd = rng.choice(DEST_REGS)
        if kind < 0.5:
            op = rng.choice(R_OPS)
            return f"    {op} {rd}, {rng.choice(SRC_REGS)}, {rng.choice(SRC_REGS)}"
        if kind < 0.8:
            op = rng.choice(I_OPS)
            return f"    {op} {rd}, {rng.choice(SRC_REGS)}, {rng.randint(-2048, 2047)}"
        if kind < 0.9:
            op = rng.choice(SHIFT_OPS)
            return f"    {op} {rd}, {rng.choice(SRC_REGS)}, {rng.randint(0, 31)}"
        return f"    lui {rd}, 0x{rng.getrandbits(20):x}"

    def mem() -> str:
        # Naturally aligned offsets within the first 2 KiB of the scratch area.
        if rng.random() < 0.5:
            op, size = rng.choice(list(LOADS.items()))
            return f"    {op} {rng.choice(DEST_REGS)}, {rng.randrange(0, 2048, size)}(s0)"
        op, size = rng.choice(list(STORES.items()))
        return f"    {op} {rng.choice(SRC_REGS)}, {rng.randrange(0, 2048, size)}(s0)"

    def simple() -> str:
        return mem() if rng.random() < 0.2 else alu()

    while static < target:
        kind = rng.random()
        if kind < 0.88:
            lines.append(simple())
            static += 1
        elif kind < 0.995:  # forward branch over 1-3 instructions, taken or not by data
            labels += 1
            op = rng.choice(BRANCHES)
            lines.append(f"    {op} {rng.choice(SRC_REGS)}, {rng.choice(SRC_REGS)}, fwd{labels}")
            skipped = rng.randint(1, 3)
            lines.extend(simple() for _ in range(skipped))
            lines.append(f"fwd{labels}:")
            static += 1 + skipped
        else:  # a short bounded loop: 2-8 trips over 4-10 instructions
            labels += 1
            body = rng.randint(4, 10)
            lines.append(f"    li s11, {rng.randint(2, 8)}")
            lines.append(f"loop{labels}:")
            lines.extend(simple() for _ in range(body))
            lines += ["    addi s11, s11, -1", f"    bnez s11, loop{labels}"]
            static += body + 3

    # Fold every register into a0 so the check sees the whole state, then finish.
    lines += [f"    xor a0, a0, {reg}" for reg in DEST_REGS if reg != "a0"]
    lines += [
        f"    li t0, 0x{FINISHER:x}",
        "    li t1, 0x5555",
        "    sw t1, 0(t0)",
        "halt:",
        "    j halt",
    ]
    return "\n".join(lines) + "\n"


@dataclass(frozen=True, slots=True)
class FreshProgram:
    seed: int
    source: str
    image: bytes  # what detfuzz runs
    assembler: str  # "vm.asm" or "GNU as"
    gnu_image: bytes
    static: int
    a0: int
    count: int  # from the entry point, finisher store included (no reset vector)


def prepare_fresh(seed: int) -> tuple[FreshProgram, list[str]]:
    """Generate, assemble and cross-check the fresh program; returns it and any problems."""
    problems: list[str] = []
    source = generate_fresh_program(seed)
    gnu = assemble(source, BUILD_DIR / f"fresh_{seed}")
    gnu_image = gnu.bin_bytes()
    image, assembler = gnu_image, "GNU as"
    try:
        repo_on_path()
        vm_asm = importlib.import_module("vm.asm")  # the project's assembler
        image, assembler = bytes(vm_asm.assemble(source, base=RAM_BASE)), "vm.asm"
    except ImportError as exc:
        print(f"vm.asm not importable ({exc}); using GNU as", file=sys.stderr)
    except Exception as exc:  # a failing assembler is a finding, not a reason to stop
        problems.append(f"vm.asm.assemble failed: {type(exc).__name__}: {exc}")
    if image != gnu_image:
        diff = next(
            (i for i, (a, b) in enumerate(zip(image, gnu_image, strict=False)) if a != b),
            min(len(image), len(gnu_image)),
        )
        problems.append(
            f"vm.asm output differs from GNU as at byte {diff} "
            f"({len(image)} vs {len(gnu_image)} bytes); running vm.asm's output"
        )

    # The expected result comes from the bytes detfuzz will run; Unicorn checks the
    # baseline interpreter on the GNU image (same program when the assemblers agree).
    ref = DecodeInterpreter(image).run()
    uni = UnicornHookBaseline(gnu_image, halt=gnu.halt).run()
    if ref.finisher != 0x5555:
        problems.append("the baseline interpreter did not reach the finisher")
    if image == gnu_image and (ref.a0, ref.count) != (uni.a0, uni.count):
        problems.append(
            f"baselines disagree: py_decode a0=0x{ref.a0:08x} count={ref.count}, "
            f"unicorn a0=0x{uni.a0:08x} count={uni.count}"
        )
    prog = FreshProgram(
        seed=seed,
        source=source,
        image=image,
        assembler=assembler,
        gnu_image=gnu_image,
        static=len(gnu_image) // 4,
        a0=ref.a0,
        count=ref.count or 0,
    )
    return prog, problems


def fresh_worker(image_path: Path, budget: int) -> int:
    """Run the image on FRESH_RUNS fresh Machines; print one JSON line."""
    try:
        vm, load_program = import_detfuzz()
    except ImportError as exc:
        print(json.dumps({"unavailable": f"cannot import detfuzz's vm package: {exc!r}"}))
        return 0
    image = image_path.read_bytes()
    runs = []
    for _ in range(FRESH_RUNS):
        t0 = time.perf_counter()
        machine = vm.Machine(vm.MachineConfig(ram_size=1 << 20))
        load_program(machine, image)
        t1 = time.perf_counter()
        result = machine.run(budget)
        t2 = time.perf_counter()
        runs.append(
            {
                "total": t2 - t0,
                "run": t2 - t1,
                "a0": machine.cpu.x[10],
                "icount": machine_icount(machine),
                "reason": str(result.reason),
                "finished": result.reason == vm.StopReason.FINISHER_PASS,
            }
        )
    print(json.dumps({"runs": runs}))
    return 0


def _worker_json(cmd: list[str], timeout: float) -> dict[str, Any]:
    try:
        proc = subprocess.run(
            cmd, capture_output=True, text=True, timeout=timeout, check=False, cwd=REPO_ROOT
        )
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {timeout:.0f} s"}
    try:
        return json.loads(proc.stdout.strip().splitlines()[-1])
    except (IndexError, json.JSONDecodeError):
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-5:]
        return {"error": f"worker exited {proc.returncode}: " + " | ".join(tail)}


def _ms(values: list[float]) -> str:
    return (
        f"{statistics.median(values) * 1e3:.2f} ms ({min(values) * 1e3:.2f}-"
        f"{max(values) * 1e3:.2f})"
    )


def measure_fresh(seed: int, procs: int, timeout: float) -> dict[str, Any]:
    prog, problems = prepare_fresh(seed)
    image_path = BUILD_DIR / f"fresh_{seed}.run.bin"
    image_path.write_bytes(prog.image)
    budget = prog.count + RESET_VECTOR_INSNS + FRESH_SLACK
    print(
        f"\nfresh program: seed {seed}, {prog.static} static instructions, "
        f"{prog.count:,} dynamic (+{RESET_VECTOR_INSNS} reset vector), assembled with "
        f"{prog.assembler}; {procs} processes x {FRESH_RUNS} fresh Machines"
    )
    first: list[float] = []
    later: list[float] = []
    first_run: list[float] = []
    later_run: list[float] = []
    cmd = [sys.executable, str(Path(__file__).resolve()), "--worker-fresh", str(image_path)]
    cmd += ["--budget", str(budget)]
    for _ in range(procs):
        out = _worker_json(cmd, timeout)
        if "unavailable" in out or "error" in out:
            problems.append(out.get("unavailable") or out["error"])
            break
        for i, run in enumerate(out["runs"]):
            if not run["finished"] or (run["a0"], run["icount"]) != (
                prog.a0,
                prog.count + RESET_VECTOR_INSNS,
            ):
                problems.append(
                    f"run {i + 1}: {run['reason']}, a0=0x{run['a0']:08x} "
                    f"icount={run['icount']}; expected a0=0x{prog.a0:08x} "
                    f"icount={prog.count + RESET_VECTOR_INSNS}"
                )
            (first if i == 0 else later).append(run["total"])
            (first_run if i == 0 else later_run).append(run["run"])
    result: dict[str, Any] = {
        "seed": seed,
        "static": prog.static,
        "count": prog.count,
        "assembler": prog.assembler,
        "problems": problems,
    }
    if first and later:
        insns = prog.count + RESET_VECTOR_INSNS
        result |= {
            "first_total": first,
            "first_run": first_run,
            "later_total": later,
            "later_run": later_run,
        }
        print(f"  run 1     Machine+load+run {_ms(first)}; run() alone {_ms(first_run)}")
        print(f"  runs 2-{FRESH_RUNS}  Machine+load+run {_ms(later)}; run() alone {_ms(later_run)}")
        m1, m2 = statistics.median(first_run), statistics.median(later_run)
        print(
            f"  run(): {insns / m1 / 1e6:.3g} MIPS cold, {insns / m2 / 1e6:.3g} MIPS warm, "
            f"cold/warm {m1 / m2:.2f}x"
        )
    for problem in problems:
        print(f"  PROBLEM: {problem}")
    return result


# --- the CLI as a user meets it ---


def _cli_command(elf: Path) -> list[str]:
    exe = shutil.which("detfuzz")
    if exe:
        return [exe, "run", str(elf)]
    return [sys.executable, "-m", "fuzzer.cli", "run", str(elf)]


def measure_cli(iters: int, runs: int, timeout: float) -> dict[str, Any]:
    built = build_prog(iters)
    expected = compute_cached(iters)
    insns = expected.count + RESET_VECTOR_INSNS
    cmd = _cli_command(built.elf)
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
    print(f"\ncli: {' '.join(cmd)}  ({insns:,} instructions with the reset vector)")
    walls: list[float] = []
    problems: list[str] = []
    for i in range(runs):
        start = time.perf_counter()
        try:
            proc = subprocess.run(
                cmd,
                capture_output=True,
                timeout=timeout,
                check=False,
                cwd=REPO_ROOT,
                env=env,
                stdin=subprocess.DEVNULL,
            )
        except subprocess.TimeoutExpired:
            problems.append(f"run {i + 1}: timed out after {timeout:.0f} s")
            break
        wall = time.perf_counter() - start
        out = proc.stdout + proc.stderr
        if proc.returncode != 0:
            tail = out.decode(errors="replace").strip().splitlines()[-3:]
            problems.append(f"run {i + 1}: exit {proc.returncode}: {' | '.join(tail)}")
            break
        if expected.uart.strip() not in out:
            problems.append(f"run {i + 1}: checksum {expected.uart.strip().decode()} not printed")
        walls.append(wall)
        print(f"  run {i + 1}: {wall:.3f} s wall, {insns / wall / 1e6:.3g} MIPS incl. start-up")
    floor: list[float] = []
    for _ in range(3):
        start = time.perf_counter()
        subprocess.run([sys.executable, "-c", "pass"], check=True)
        floor.append(time.perf_counter() - start)
    result: dict[str, Any] = {"command": cmd, "instructions": insns, "problems": problems}
    result["python_startup"] = floor
    if walls:
        med = statistics.median(walls)
        result |= {"wall": walls, "mips_median": insns / med}
        print(
            f"  median {med:.3f} s ({min(walls):.3f}-{max(walls):.3f}) -> "
            f"{insns / med / 1e6:.3g} MIPS including start-up; `python -c pass` takes "
            f"{statistics.median(floor) * 1e3:.0f} ms"
        )
    for problem in problems:
        print(f"  PROBLEM: {problem}")
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description="detfuzz speed as a user meets it.")
    parser.add_argument("--only", choices=("cli", "fresh"))
    parser.add_argument("--iters", type=int, default=1350, help="ITERS of prog.S for cli")
    parser.add_argument("--cli-runs", type=int, default=5)
    parser.add_argument("--seed", type=int, default=1, help="seed of the fresh program")
    parser.add_argument("--fresh-procs", type=int, default=5)
    parser.add_argument("--timeout", type=float, default=900.0)
    parser.add_argument("--json", nargs="?", const="-", metavar="PATH")
    parser.add_argument("--worker-fresh", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--budget", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.worker_fresh:
        return fresh_worker(args.worker_fresh, args.budget)

    results: dict[str, Any] = {}
    if args.only in (None, "cli"):
        results["cli"] = measure_cli(args.iters, args.cli_runs, args.timeout)
    if args.only in (None, "fresh"):
        results["fresh"] = measure_fresh(args.seed, args.fresh_procs, args.timeout)
    if args.json:
        text = json.dumps(results, indent=2)
        if args.json == "-":
            print(text)
        else:
            Path(args.json).write_text(text + "\n")
    return 1 if any(r.get("problems") for r in results.values()) else 0


if __name__ == "__main__":
    sys.exit(main())
