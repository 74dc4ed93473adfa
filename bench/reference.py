"""Pure-Python reference model of bench/prog.S.

It computes, without emulating any instruction, what a correct RV32IM machine must end
with after running the benchmark program for a given ITERS:

* ``a0``: the checksum left in a0 (and printed on the UART),
* ``count``: the exact dynamic instruction count, from the entry point at 0x80000000 up to
  and including the store to the finisher (the ``j halt`` spin is not counted; neither are
  the 6 instructions of QEMU's reset vector that detfuzz runs before the entry point),
* ``uart``: the bytes printed (8 lowercase hex digits and a newline).

The model mirrors prog.S statement by statement: keep the two in step. Every engine run by
bench/cpu_bench.py is checked against it, and ``python bench/build.py --check`` checks it
against QEMU's printed checksum.
"""

from __future__ import annotations

import argparse
import hashlib
import json
from dataclasses import asdict, dataclass
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
CACHE_DIR = BENCH_DIR / "build"

MASK = 0xFFFF_FFFF
ARRAY_WORDS = 1024

LCG_MUL = 1664525
LCG_ADD = 1013904223
LCG_SEED = 12345
CHECK_MUL = 0x9E3779B1
BRANCH_BIT = 0x100  # `andi t3, a0, 0x100`
XOR_KEY = 0x5A5  # `xori a0, a0, 0x5a5`, run when the beq is not taken

# Static instruction counts of the straight-line parts of prog.S. `li` of a constant that
# needs more than 12 bits expands to lui+addi, `la` to auipc+addi (the build disables
# linker relaxation so this holds).
PROLOGUE = 2 + 2 + 2 + 2 + 1 + 1  # la s0; li s1; li t1; li t0; mv a1; li a2
FILL_PER_WORD = 6  # mul, add, sw, addi, addi, bnez
CHECK_SETUP_FIXED = 1 + 2  # li a0, 0; li s4, 0x9e3779b1 (li s2, ITERS is li_length(ITERS))
OUTER_OVERHEAD = 2 + 2  # mv a1; li a2 / addi s2; bnez s2
INNER_BASE = 14  # lw slli srli or xor mul add andi beq add sw addi addi bne
EPILOGUE = (1 + 1 + 2 + 1) + 8 * 7 + 2 + (1 + 2 + 1)  # setup, 8 digits, newline, finisher


@dataclass(frozen=True, slots=True)
class Expected:
    """What a correct run of prog_<iters> must produce."""

    iters: int
    a0: int
    count: int
    uart: bytes
    branch_not_taken: int  # how many times the data-dependent beq fell through to xori


def li_length(value: int) -> int:
    """Number of RV32 instructions `li rd, value` expands to (GNU as, no compression)."""
    value &= MASK
    signed = value - (1 << 32) if value & 0x8000_0000 else value
    if -2048 <= signed < 2048:
        return 1  # addi rd, zero, imm
    if value & 0xFFF == 0:
        return 1  # lui rd, hi
    return 2  # lui rd, hi; addi rd, rd, lo


def compute(iters: int) -> Expected:
    """Run the model of prog.S for ``iters`` walks (about 1 s per 1000 walks on CPython)."""
    if iters < 1:
        raise ValueError(f"ITERS must be >= 1 (the outer loop is do-while), got {iters}")

    array: list[int] = []
    x = LCG_SEED
    for _ in range(ARRAY_WORDS):
        x = (x * LCG_MUL + LCG_ADD) & MASK
        array.append(x)

    a0 = 0
    not_taken = 0
    # Locals for speed: this loop runs ITERS * 1024 times.
    mask, mul, bit, key = MASK, CHECK_MUL, BRANCH_BIT, XOR_KEY
    indices = range(ARRAY_WORDS)
    for _ in range(iters):
        for i in indices:
            t0 = array[i]
            a0 = ((a0 << 5) | (a0 >> 27)) & mask
            a0 = (((a0 ^ t0) * mul) + t0) & mask
            if a0 & bit:
                a0 ^= key
                not_taken += 1
            array[i] = (t0 + a0) & mask

    count = (
        PROLOGUE
        + FILL_PER_WORD * ARRAY_WORDS
        + CHECK_SETUP_FIXED
        + li_length(iters)
        + iters * (OUTER_OVERHEAD + INNER_BASE * ARRAY_WORDS)
        + not_taken
        + EPILOGUE
    )
    return Expected(
        iters=iters,
        a0=a0,
        count=count,
        uart=f"{a0:08x}\n".encode(),
        branch_not_taken=not_taken,
    )


def compute_cached(iters: int) -> Expected:
    """``compute`` with its result kept in bench/build/ (ITERS=34000 takes ~25 s).

    The cache key hashes this file and prog.S, so editing either recomputes.
    """
    key = hashlib.sha256(
        Path(__file__).read_bytes() + (BENCH_DIR / "prog.S").read_bytes()
    ).hexdigest()[:16]
    path = CACHE_DIR / f"reference_{iters}_{key}.json"
    if path.exists():
        data = json.loads(path.read_text())
        return Expected(**{**data, "uart": bytes.fromhex(data["uart"])})
    expected = compute(iters)
    CACHE_DIR.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({**asdict(expected), "uart": expected.uart.hex()}))
    return expected


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("iters", type=int, nargs="+")
    args = parser.parse_args()
    for iters in args.iters:
        exp = compute_cached(iters)
        taken = 1 - exp.branch_not_taken / (iters * ARRAY_WORDS)
        print(f"ITERS={iters}: a0=0x{exp.a0:08x} count={exp.count:,} (beq taken {taken:.1%})")


if __name__ == "__main__":
    main()
