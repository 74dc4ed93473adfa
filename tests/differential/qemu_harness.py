"""Build guest programs with GNU binutils and run them on the reference QEMU and on detfuzz.

The reference is `qemu-system-riscv32` 7.2 (Debian `qemu-system-misc`) with the command line
the project pins (`qemu_command`). A guest prints everything it observes on UART0 and ends
through the sifive_test finisher; the tests compare the UART bytes and the finisher status.

Guests print "== name" lines; `split_sections` cuts the output there so that every section
is compared (and reported) on its own, and one known divergence does not hide the others.
"""

from __future__ import annotations

import difflib
import hashlib
import os
import re
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from vm import Machine, MachineConfig, StopReason
from vm.loader import load_program

GUEST_DIR = Path(__file__).parent / "guests"

RAM_SIZE = 8 << 20  # detfuzz's default, and `-m 8M` for QEMU
QEMU = "qemu-system-riscv32"
AS = "riscv64-unknown-elf-as"
LD = "riscv64-unknown-elf-ld"
TOOLS = (QEMU, AS, LD)

QEMU_CPU = "rv32,c=off,f=off,d=off,a=off,s=off,u=off,h=off,zba=off,zbb=off,zbc=off,zbs=off,pmp=off"
AS_FLAGS = ("-mno-relax", "-march=rv32im_zicsr_zifencei", "-mabi=ilp32")
LD_FLAGS = ("-N", "-m", "elf32lriscv", "-Ttext=0x80000000", "--no-warn-rwx-segments")

# A guest that does not finish in time is a failure, not a hang: QEMU 7.2 can spin without
# answering SIGTERM (e.g. a sleeping WFI at shift >= 6), so the timeout kills it outright.
QEMU_TIMEOUT_S = 20
DETFUZZ_BUDGET = 5_000_000

PASS = "pass"

# Values QEMU 7.2 gets wrong and detfuzz gets right, printed by guests under these tags;
# `mask` hides the value on both sides and dedicated tests check detfuzz's against the spec.
#   mtval_qemu_stale: JAL / taken branch to a misaligned target; QEMU stores the stale
#   cpu_pc (the start of the translation block) in mtval instead of the target address.
MASKED_TAGS = ("mtval_qemu_stale",)
_MASK_RE = re.compile(rb"^(" + b"|".join(t.encode() for t in MASKED_TAGS) + rb")=\S*$", re.M)
_SECTION_RE = re.compile(rb"^== (\S+)\n", re.M)
_SOURCE_SECTION_RE = re.compile(r"^\s*SECTION\s+(\w+)", re.M)


def require_tool(name: str) -> str:
    """The path of an external reference tool (a local copy of tests/conftest.py's helper).

    In CI a missing tool fails loudly: a differential test that silently skips proves
    nothing. Elsewhere it skips.
    """
    path = shutil.which(name)
    if path is None:
        message = f"{name} not found: install qemu-system-misc and binutils-riscv64-unknown-elf"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return path


def require_tools() -> None:
    for tool in TOOLS:
        require_tool(tool)


def qemu_command(elf: Path, shift: int) -> list[str]:
    """The pinned reference command line."""
    return [
        QEMU,
        "-M", "virt",
        "-cpu", QEMU_CPU,
        "-bios", "none",
        "-nographic",
        "-m", "8M",
        "-icount", f"shift={shift},sleep=off",
        "-kernel", str(elf),
    ]  # fmt: skip


@dataclass(frozen=True)
class Outcome:
    """What one run of a guest produced: the UART bytes and how it ended.

    `status` is "pass" (finisher pass), "exit:<code>" (finisher fail with <code>; for QEMU
    any nonzero exit status), "timeout", or "stop:<reason>" (detfuzz stopped otherwise).
    """

    output: bytes
    status: str
    detail: str = ""  # QEMU's stderr or detfuzz's RunResult, for failure messages


def run_qemu(elf: Path, shift: int, *, timeout: float = QEMU_TIMEOUT_S) -> Outcome:
    try:
        proc = subprocess.run(
            qemu_command(elf, shift),
            stdin=subprocess.DEVNULL,
            capture_output=True,
            timeout=timeout,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:  # subprocess.run has already killed it
        return Outcome(exc.stdout or b"", "timeout", f"no finisher after {timeout} s")
    status = PASS if proc.returncode == 0 else f"exit:{proc.returncode}"
    return Outcome(proc.stdout, status, proc.stderr.decode(errors="replace").strip())


def run_detfuzz(elf_bytes: bytes, shift: int, *, budget: int = DETFUZZ_BUDGET) -> Outcome:
    machine = Machine(MachineConfig(ram_size=RAM_SIZE, icount_shift=shift))
    load_program(machine, elf_bytes)
    result = machine.run(budget)
    while result.reason is StopReason.FINISHER_RESET and result.executed < budget:
        budget -= result.executed  # QEMU resets the machine and goes on; so does detfuzz
        result = machine.run(budget)
    if result.reason is StopReason.FINISHER_PASS:
        status = PASS
    elif result.reason is StopReason.FINISHER_FAIL:
        status = f"exit:{result.finisher_code}"
    else:
        status = f"stop:{result.reason.value}"
    return Outcome(machine.console_output(), status, f"{result} pc={machine.cpu.pc:#010x}")


@dataclass
class GuestBuilder:
    """Assembles and links guests into `workdir`, once per distinct source (by hash)."""

    workdir: Path
    _cache: dict[str, Path] = field(default_factory=dict)

    def build(self, source: Path) -> Path:
        # The shared runtime is .include'd: it is part of what the build depends on.
        text = source.read_bytes() + (source.parent / "runtime.inc").read_bytes()
        key = hashlib.sha256(text).hexdigest()[:16]
        elf = self._cache.get(key)
        if elf is not None:
            return elf
        obj = self.workdir / f"{source.stem}-{key}.o"
        elf = self.workdir / f"{source.stem}-{key}.elf"
        for cmd in (
            [AS, *AS_FLAGS, "-I", str(source.parent), str(source), "-o", str(obj)],
            [LD, *LD_FLAGS, str(obj), "-o", str(elf)],
        ):
            proc = subprocess.run(cmd, capture_output=True, check=False, text=True)
            if proc.returncode != 0:
                pytest.fail(f"{' '.join(cmd)} failed:\n{proc.stderr}")
        self._cache[key] = elf
        return elf


@dataclass
class Runner:
    """Runs a guest on both machines once per (source, shift) and remembers the outcomes."""

    builder: GuestBuilder
    _runs: dict[tuple[Path, int], tuple[Outcome, Outcome]] = field(default_factory=dict)

    def run(self, guest: str, shift: int) -> tuple[Outcome, Outcome]:
        """(QEMU's outcome, detfuzz's outcome) for guests/<guest>.S at `shift`.

        Checks for the reference tools first, inside the test: in CI a missing tool fails
        the test itself (not its setup); elsewhere it skips.
        """
        require_tools()
        elf = self.builder.build(GUEST_DIR / f"{guest}.S")
        key = (elf, shift)
        if key not in self._runs:
            self._runs[key] = (run_qemu(elf, shift), run_detfuzz(elf.read_bytes(), shift))
        return self._runs[key]


def source_sections(guest: str) -> list[str]:
    """The section names a guest's source declares, in order (for parametrizing tests)."""
    text = (GUEST_DIR / f"{guest}.S").read_text()
    names = _SOURCE_SECTION_RE.findall(text)
    assert len(names) == len(set(names)), f"{guest}.S repeats a section name"
    return names


def split_sections(output: bytes) -> dict[str, bytes]:
    """Cut UART output at "== name" lines. Text before the first section is under ""."""
    sections: dict[str, bytes] = {}
    matches = list(_SECTION_RE.finditer(output))
    sections[""] = output[: matches[0].start()] if matches else output
    for i, m in enumerate(matches):
        end = matches[i + 1].start() if i + 1 < len(matches) else len(output)
        name = m.group(1).decode(errors="replace")
        # A repeated header (a guest that restarted) gets a distinct key, never merged.
        while name in sections:
            name += "'"
        sections[name] = output[m.end() : end]
    return sections


def mask(output: bytes) -> bytes:
    """Hide the values printed under MASKED_TAGS."""
    return _MASK_RE.sub(rb"\1=<masked>", output)


def tagged_values(output: bytes, tag: str) -> list[int]:
    """Every hex value printed as "tag=xxxxxxxx", in order."""
    pattern = re.compile(rb"^" + re.escape(tag.encode()) + rb"=([0-9a-f]{8})$", re.M)
    return [int(v, 16) for v in pattern.findall(output)]


def diff(expected: bytes, actual: bytes, *, names: tuple[str, str] = ("qemu", "detfuzz")) -> str:
    """A unified diff of two outputs, for assertion messages."""
    a = expected.decode("latin-1").splitlines(keepends=True)
    b = actual.decode("latin-1").splitlines(keepends=True)
    return "".join(difflib.unified_diff(a, b, fromfile=names[0], tofile=names[1], n=3))
