"""What every `detfuzz` command shares: exit statuses, option types, the machine options,
program loading and the console.

Only the standard library is imported at module level; `vm` is imported inside the
functions that need it, so `detfuzz --help` and usage errors stay fast.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from vm.config import MachineConfig
    from vm.machine import Machine
    from vm.stop import RunResult, StopReason

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_NO_FINISHER = 3
EXIT_INTERRUPTED = 130  # 128 + SIGINT, as a shell reports Ctrl-C
EXIT_BROKEN_PIPE = 141  # 128 + SIGPIPE

DEFAULT_RUN_BUDGET = 200_000_000
DEFAULT_RAM_SIZE = 8 << 20
HOST_SEED_LIMIT = 1 << 64


class CliError(Exception):
    """Bad input found while a command runs: `main` prints `detfuzz: <message>` on one line
    and exits with `status` (2 unless said otherwise)."""

    def __init__(self, message: str, status: int = EXIT_USAGE) -> None:
        super().__init__(message)
        self.status = status


class Parser(argparse.ArgumentParser):
    """argparse, but usage errors are one line and exit 2 (argparse's own status too)."""

    def error(self, message: str) -> None:  # type: ignore[override]
        sys.stderr.write(f"detfuzz: {message} (see --help)\n")
        raise SystemExit(EXIT_USAGE)


# -- option types ----------------------------------------------------------------------------


def parse_int(text: str) -> int:
    """An integer as Python writes it: 1000, 1_000, 0x3e8."""
    try:
        return int(text.replace("_", ""), 0)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None


def parse_count(text: str) -> int:
    """A non-negative integer (an icount, a budget)."""
    value = parse_int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0: {text!r}")
    return value


def parse_host_seed(text: str) -> int:
    value = parse_int(text)
    if not 0 <= value < HOST_SEED_LIMIT:
        raise argparse.ArgumentTypeError(f"host seed must be in 0..2**64-1: {text!r}")
    return value


def parse_size(text: str) -> int:
    """A RAM size as QEMU's -m reads it: 8M, 5116K, or a bare number of MiB; rounded up to
    8 KiB as QEMU rounds it."""
    units = {"k": 1 << 10, "m": 1 << 20, "g": 1 << 30}
    scale = units.get(text[-1:].lower())
    if scale is None:
        scale, text = 1 << 20, text + "M"
    granule = 8 << 10
    size = parse_int(text[:-1]) * scale
    if size <= 0:
        raise argparse.ArgumentTypeError(f"RAM size must be positive: {text!r}")
    return -(-size // granule) * granule


def add_machine_options(parser: argparse.ArgumentParser) -> None:
    """--shift and --ram-size: what the machine is built from (a log records their hash)."""
    parser.add_argument(
        "--shift",
        type=parse_int,
        default=0,
        metavar="N",
        help="icount shift N: virtual time advances 2**N ns per instruction (default 0)",
    )
    parser.add_argument(
        "--ram-size",
        type=parse_size,
        default=DEFAULT_RAM_SIZE,
        metavar="SIZE",
        help="RAM size as QEMU's -m takes it: 8M, 5116K, or MiB (default 8M)",
    )


def add_host_seed_option(parser: argparse.ArgumentParser, help_text: str) -> None:
    parser.add_argument("--host-seed", type=parse_host_seed, default=0, metavar="N", help=help_text)


def add_allow_device_option(parser: argparse.ArgumentParser) -> None:
    """`--device MODULE:CLASS`: the user devices a report names that may be imported
    (never imported unless given here)."""
    parser.add_argument(
        "--device",
        action="append",
        default=[],
        metavar="MODULE:CLASS",
        help="allow this user device (as named in the report) to be imported; repeatable",
    )


# -- the machine and the program -------------------------------------------------------------


def machine_config(args: argparse.Namespace) -> MachineConfig:
    from vm.config import MachineConfig

    try:
        return MachineConfig(ram_size=args.ram_size, icount_shift=args.shift)
    except ValueError as exc:  # ConfigError: --shift or --ram-size out of range
        raise CliError(f"bad machine option: {exc}") from None


def read_program(path: str) -> bytes:
    """The program image: the file's bytes, or its assembly when it is a .S/.s source."""
    try:
        with open(path, "rb") as handle:
            data = handle.read()
    except OSError as exc:
        raise CliError(f"cannot read {path}: {exc.strerror or exc}") from None
    if not path.endswith((".S", ".s")):
        return data
    from vm.asm import assemble

    try:
        return assemble(data.decode("utf-8", errors="replace"))
    except ValueError as exc:  # AsmError
        raise CliError(f"{path}: {exc}") from None


def load_into(machine: Machine, path: str, image: bytes) -> None:
    from vm.loader import load_program

    try:
        load_program(machine, image)
    except ValueError as exc:  # LoadError
        raise CliError(f"{path}: {exc}") from None


def check_program(config: MachineConfig, path: str, image: bytes) -> None:
    """Load the image into a scratch machine, so a bad program is reported before any
    output file is created (building a machine costs microseconds: RAM is mapped lazily)."""
    from vm.machine import Machine

    load_into(Machine(config), path, image)


# -- running ---------------------------------------------------------------------------------

FINISHER_STATUS = {"finisher-pass": EXIT_OK, "finisher-fail": EXIT_FAILED}


def finisher_status(reason: StopReason) -> int:
    """`run` and `record`: 0 on finisher pass, 1 on fail, 3 for any other stop."""
    return FINISHER_STATUS.get(reason.value, EXIT_NO_FINISHER)


def stop_text(machine: Machine, result: RunResult) -> str:
    code = "" if result.finisher_code is None else f" code={result.finisher_code}"
    cpu = machine.cpu
    return f"stop={result.reason.value}{code} icount={cpu.icount} pc={cpu.pc:#010x}"


def run_through_resets(
    machine: Machine, budget: int, *, stop: Callable[[], bool] = lambda: False
) -> RunResult:
    """Run `budget` instructions; after a guest reset (the machine has reset itself) run
    on, as QEMU does, unless `stop()` says the run was asked to end."""
    from vm.stop import RunResult, StopReason

    result = machine.run(budget)
    executed = result.executed
    while result.reason is StopReason.FINISHER_RESET and executed < budget and not stop():
        result = machine.run(budget - executed)
        executed += result.executed
    return RunResult(result.reason, executed, result.finisher_code)


# -- the console -----------------------------------------------------------------------------


class Console:
    """The guest's UART output to stdout (or nowhere). A reader that goes away (`| head`)
    does not raise out of the device write in the middle of an instruction: the write is
    dropped and `on_broken` asks the machine to stop at the next instruction boundary."""

    def __init__(self, *, enabled: bool = True) -> None:
        self.stream = sys.stdout.buffer if enabled else None
        self.broken = False
        self.on_broken: Callable[[], None] = lambda: None

    def write(self, data: bytes) -> None:
        if self.stream is None or self.broken:
            return
        try:
            self.stream.write(data)
        except BrokenPipeError:
            self._break()

    def flush(self) -> None:
        if self.stream is None or self.broken:
            return
        try:
            self.stream.flush()
        except BrokenPipeError:
            self._break()

    def _break(self) -> None:
        self.broken = True
        silence_stdout()
        self.on_broken()


def silence_stdout() -> None:
    """The reader of stdout went away: point stdout at /dev/null, so that later writes
    (ours, and Python's flush at exit) do not raise or print "Exception ignored"."""
    # A stdout that is no file (captured in a test) has nothing to redirect.
    with contextlib.suppress(OSError, ValueError):
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())


def note(message: str) -> None:
    """One line on stderr, prefixed like every detfuzz message."""
    sys.stderr.write(f"detfuzz: {message}\n")
