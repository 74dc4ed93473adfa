"""How fast `vm.asm.assemble_program` assembles the programs a campaign generates.

    python bench/asm_bench.py               # 100 programs, 7 rounds
    python bench/asm_bench.py --count 40 --rounds 3
    python bench/asm_bench.py --profile     # also a cProfile of one round

Draws `--count` scenarios from the default strategy once (Hypothesis `find`, seeded, so the
same programs every run; nothing is saved), then times the assembly of every program in
interleaved rounds (each round assembles each program once, in order) and prints the
median per program and per source line. The first sight figure is one pass over the
programs after emptying the assembler's caches of parsed operands (if it has any): each
program then meets only the operand texts of the programs before it, as in a campaign.
It also prints a digest (sha256 over every
program's image bytes and symbols, in order): an assembler change that keeps the output
keeps the digest, so before and after can be compared.
"""

from __future__ import annotations

import argparse
import cProfile
import hashlib
import pstats
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


import vm.asm
from fuzzer.engine import draw_examples
from fuzzer.strategies import scenarios
from vm.asm import Program, assemble_program
from vm.memory import RAM_BASE


def draw_programs(count: int, seed: int) -> list[str]:
    """The programs of `count` scenarios of the default strategy, the same for a seed."""
    return [scenario.program for scenario in draw_examples(scenarios(), count=count, seed=seed)]


def program_digest(program: Program) -> bytes:
    """sha256 of one assembled program: its image, then its symbols in sorted order."""
    h = hashlib.sha256(program.image)
    for name, address in sorted(program.symbols.items()):
        h.update(f"\n{name}={address}".encode())
    return h.digest()


def outputs_digest(programs: list[str]) -> tuple[str, float]:
    """The digest of all outputs, and the seconds it took from empty caches."""
    for cache in ("_compile", "_memory_form"):
        getattr(getattr(vm.asm, cache, None), "cache_clear", lambda: None)()
    h = hashlib.sha256()
    elapsed = 0.0
    for source in programs:
        start = time.perf_counter()
        program = assemble_program(source, base=RAM_BASE)
        elapsed += time.perf_counter() - start
        h.update(program_digest(program))
    return h.hexdigest(), elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--profile", action="store_true")
    args = parser.parse_args()

    programs = draw_programs(args.count, args.seed)
    lines = [source.count("\n") + 1 for source in programs]
    print(
        f"{len(programs)} programs, {sum(lines)} lines "
        f"(median {statistics.median(lines):.0f} lines per program)"
    )
    digest, first_sight = outputs_digest(programs)
    print(f"outputs digest: {digest}")
    print(f"first sight: {first_sight / len(programs) * 1e3:.2f} ms per program")

    per_program: list[list[float]] = [[] for _ in programs]
    round_totals: list[float] = []
    for _ in range(args.rounds):
        start_round = time.perf_counter()
        for index, source in enumerate(programs):
            start = time.perf_counter()
            assemble_program(source, base=RAM_BASE)
            per_program[index].append(time.perf_counter() - start)
        round_totals.append(time.perf_counter() - start_round)

    medians = [statistics.median(times) for times in per_program]
    per_line = [m / n for m, n in zip(medians, lines, strict=True)]
    total = statistics.median(round_totals)
    print(f"round total (median of {args.rounds}): {total * 1e3:.1f} ms")
    print(f"per program: median {statistics.median(medians) * 1e3:.2f} ms, "
          f"mean {statistics.fmean(medians) * 1e3:.2f} ms")  # fmt: skip
    print(f"per line:    median {statistics.median(per_line) * 1e6:.2f} us, "
          f"overall {total / sum(lines) * 1e6:.2f} us")  # fmt: skip

    if args.profile:
        profiler = cProfile.Profile()
        profiler.enable()
        for source in programs:
            assemble_program(source, base=RAM_BASE)
        profiler.disable()
        pstats.Stats(profiler).sort_stats("tottime").print_stats(25)


if __name__ == "__main__":
    main()
