"""Build bench/prog.S with GNU binutils, and small helpers around the results.

``python bench/build.py 135 1350`` writes ``bench/build/prog_<N>.elf`` and ``.bin`` for each
ITERS; ``--check`` also runs each ELF in qemu-system-riscv32 and compares the printed
checksum with bench/reference.py.

There is no riscv gcc on the machine, only binutils, so ITERS is not a ``-D`` define: the
build prepends ``.equ ITERS, N`` to the source text. The outputs are cached: a stamp file
holds a hash of everything that goes into them (source, linker script, flags, ITERS), and a
build whose stamp matches is skipped.
"""

from __future__ import annotations

import argparse
import hashlib
import shutil
import struct
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from reference import compute_cached

BENCH_DIR = Path(__file__).resolve().parent
BUILD_DIR = BENCH_DIR / "build"
PROG_SOURCE = BENCH_DIR / "prog.S"
LINK_SCRIPT = BENCH_DIR / "link.ld"

RAM_BASE = 0x8000_0000
CROSS = "riscv64-unknown-elf-"
# -mno-relax / --no-relax: keep `la` as auipc+addi and alignment padding out of .text, so
# the static layout (and so the dynamic count in reference.py) does not depend on the linker.
AS_FLAGS = ("-march=rv32im", "-mabi=ilp32", "-mno-relax")
LD_FLAGS = ("-m", "elf32lriscv", "--no-relax")
BUILD_VERSION = "1"  # bump to invalidate every cached build


class BuildError(RuntimeError):
    """A binutils step failed or is missing."""


@dataclass(frozen=True, slots=True)
class Built:
    """The products of one build: the ELF, its flat image and the addresses we need."""

    elf: Path
    bin: Path
    entry: int
    halt: int  # address of the final spin loop: Unicorn's `until`

    def elf_bytes(self) -> bytes:
        return self.elf.read_bytes()

    def bin_bytes(self) -> bytes:
        return self.bin.read_bytes()


def _tool(name: str) -> str:
    path = shutil.which(CROSS + name)
    if path is None:
        raise BuildError(f"{CROSS}{name} not found; install Debian's binutils-riscv64-unknown-elf")
    return path


def _run(cmd: list[str]) -> None:
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise BuildError(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stderr}")


def assemble(source: str, stem: Path, *, link_script: Path = LINK_SCRIPT) -> Built:
    """Assemble and link ``source`` into ``stem``.elf and ``stem``.bin (no caching).

    The source is written next to the outputs as ``stem``.S so a failing line can be
    looked up by the number GNU as reports.
    """
    stem.parent.mkdir(parents=True, exist_ok=True)
    src, obj = stem.with_suffix(".S"), stem.with_suffix(".o")
    elf, flat = stem.with_suffix(".elf"), stem.with_suffix(".bin")
    src.write_text(source)
    _run([_tool("as"), *AS_FLAGS, "-o", str(obj), str(src)])
    _run([_tool("ld"), *LD_FLAGS, "-T", str(link_script), "-o", str(elf), str(obj)])
    _run([_tool("objcopy"), "-O", "binary", str(elf), str(flat)])
    data = elf.read_bytes()
    symbols = elf_symbols(data)
    if "halt" not in symbols:
        raise BuildError(f"{elf}: no `halt` label")
    return Built(elf=elf, bin=flat, entry=elf_entry(data), halt=symbols["halt"])


def source_for(iters: int) -> str:
    """prog.S with ITERS defined, as fed to the assembler."""
    if iters < 1:
        raise ValueError(f"ITERS must be >= 1, got {iters}")
    return f".equ ITERS, {iters}\n" + PROG_SOURCE.read_text()


def build_prog(iters: int, *, force: bool = False) -> Built:
    """Build (or reuse) bench/build/prog_<iters>.elf and .bin."""
    source = source_for(iters)
    digest = hashlib.sha256(
        "\0".join([BUILD_VERSION, source, LINK_SCRIPT.read_text(), *AS_FLAGS, *LD_FLAGS]).encode()
    ).hexdigest()
    stem = BUILD_DIR / f"prog_{iters}"
    stamp = stem.with_suffix(".stamp")
    elf, flat = stem.with_suffix(".elf"), stem.with_suffix(".bin")
    if (
        not force
        and elf.exists()
        and flat.exists()
        and stamp.exists()
        and stamp.read_text() == digest
    ):
        data = elf.read_bytes()
        return Built(elf=elf, bin=flat, entry=elf_entry(data), halt=elf_symbols(data)["halt"])
    built = assemble(source, stem)
    stamp.write_text(digest)  # written last: a half-finished build is never trusted
    return built


# --- a minimal ELF32 little-endian reader (entry point and symbol table only) ---


def elf_entry(data: bytes) -> int:
    _check_elf32(data)
    return struct.unpack_from("<I", data, 24)[0]


def elf_symbols(data: bytes) -> dict[str, int]:
    """Map symbol name -> value for every named symbol in the ELF's .symtab."""
    _check_elf32(data)
    shoff = struct.unpack_from("<I", data, 32)[0]
    shentsize, shnum = struct.unpack_from("<HH", data, 46)
    sections = [
        struct.unpack_from("<IIIIIIIIII", data, shoff + i * shentsize) for i in range(shnum)
    ]
    symbols: dict[str, int] = {}
    sht_symtab = 2
    for _name, sh_type, _flags, _addr, offset, size, link, _info, _align, entsize in sections:
        if sh_type != sht_symtab:
            continue
        str_offset = sections[link][4]
        for pos in range(offset, offset + size, entsize):
            st_name, st_value = struct.unpack_from("<II", data, pos)
            if st_name:
                end = data.index(b"\0", str_offset + st_name)
                symbols[data[str_offset + st_name : end].decode()] = st_value
    return symbols


def _check_elf32(data: bytes) -> None:
    if data[:4] != b"\x7fELF" or data[4] != 1 or data[5] != 1:
        raise BuildError("not a little-endian ELF32 file")


# --- command line ---


def qemu_checksum(elf: Path, timeout: float = 120.0) -> tuple[int, str]:
    """Run ``elf`` in qemu-system-riscv32 -M virt; return (exit status, UART text)."""
    qemu = shutil.which("qemu-system-riscv32")
    if qemu is None:
        raise BuildError("qemu-system-riscv32 not found (Debian package qemu-system-misc)")
    proc = subprocess.run(
        [qemu, "-M", "virt", "-bios", "none", "-nographic", "-kernel", str(elf)],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        timeout=timeout,
        check=False,
    )
    return proc.returncode, proc.stdout.decode(errors="replace")


def main() -> int:
    parser = argparse.ArgumentParser(description="Build bench/prog.S for the given ITERS.")
    parser.add_argument("iters", type=int, nargs="*", default=[135, 1350])
    parser.add_argument("--force", action="store_true", help="rebuild even if cached")
    parser.add_argument(
        "--check",
        action="store_true",
        help="run each ELF in qemu-system-riscv32 and compare with bench/reference.py",
    )
    args = parser.parse_args()

    failures = 0
    for iters in args.iters:
        built = build_prog(iters, force=args.force)
        print(f"{built.elf}  entry=0x{built.entry:08x} halt=0x{built.halt:08x}")
        if args.check:
            expected = compute_cached(iters)
            status, out = qemu_checksum(built.elf)
            ok = status == 0 and out.encode() == expected.uart
            failures += not ok
            print(
                f"  qemu: exit {status}, printed {out.strip()!r}; reference "
                f"a0=0x{expected.a0:08x} count={expected.count:,}: {'ok' if ok else 'MISMATCH'}"
            )
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
