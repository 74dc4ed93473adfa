"""The `detfuzz` command line.

Exit statuses, pinned for every command now and later:
  0  success (for `run`: the guest wrote "pass" to the finisher)
  1  the thing checked failed (for `run`: finisher fail, the guest's code on stderr)
  2  bad usage or a bad input file: one clear line on stderr, no traceback
  3  the guest stopped without the finisher (budget, idle forever, fault loop)

Only the standard library and `vm` are imported on the `run` path, so start-up stays short.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_NO_FINISHER = 3

DEFAULT_RUN_BUDGET = 200_000_000


class _Parser(argparse.ArgumentParser):
    """argparse, but usage errors are one line and exit 2 (argparse's own status too)."""

    def error(self, message: str) -> None:  # type: ignore[override]
        sys.stderr.write(f"detfuzz: {message} (see --help)\n")
        raise SystemExit(EXIT_USAGE)


def _int(text: str) -> int:
    try:
        return int(text.replace("_", ""), 0)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None


def _size(text: str) -> int:
    """A RAM size as QEMU's -m reads it: 8M, 5116K, or a bare number of MiB; rounded up to
    8 KiB as QEMU rounds it."""
    units = {"k": 1 << 10, "m": 1 << 20, "g": 1 << 30}
    scale = units.get(text[-1:].lower())
    if scale is None:
        scale, text = 1 << 20, text + "M"
    granule = 8 << 10
    size = _int(text[:-1]) * scale
    if size <= 0:
        raise argparse.ArgumentTypeError(f"RAM size must be positive: {text!r}")
    return -(-size // granule) * granule


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="detfuzz", description="A determinism fuzzer for record/replay emulation."
    )
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    run = commands.add_parser(
        "run",
        help="run a guest program on the built-in virt32 machine",
        description=(
            "Run PROGRAM (an RV32 ELF, a flat binary loaded at 0x80000000, or assembly "
            "source assembled by detfuzz's own assembler) until the "
            "sifive_test finisher, the instruction budget, WFI with nothing pending, or a "
            "trap loop. The bytes the guest writes to UART0 go to stdout; the stop reason, "
            "finisher code and icount go to stderr. Exit 0 on finisher pass, 1 on finisher "
            "fail, 2 on bad usage or input, 3 when the guest stopped without the finisher."
        ),
    )
    run.add_argument(
        "program", help="ELF32 RISC-V executable, flat binary, or assembly source (.S/.s)"
    )
    run.add_argument(
        "--budget",
        type=_int,
        default=DEFAULT_RUN_BUDGET,
        help=f"stop after this many instructions (default {DEFAULT_RUN_BUDGET:_})",
    )
    run.add_argument(
        "--shift",
        type=_int,
        default=0,
        help="icount shift N: virtual time advances 2**N ns per instruction (default 0)",
    )
    run.add_argument(
        "--ram-size",
        type=_size,
        default=8 << 20,
        help="RAM size as QEMU's -m takes it: 8M, 5116K, or MiB (default 8M)",
    )
    return parser


def cmd_run(args: argparse.Namespace) -> int:
    from vm import Machine, MachineConfig, StopReason
    from vm.loader import LoadError, load_program

    try:
        with open(args.program, "rb") as handle:
            data = handle.read()
    except OSError as exc:
        return _fail(f"cannot read {args.program}: {exc.strerror or exc}")
    if args.budget < 0:
        return _fail("--budget must be >= 0")
    try:
        if args.program.endswith((".S", ".s")):
            from vm.asm import assemble

            data = assemble(data.decode("utf-8", errors="replace"))
        machine = Machine(MachineConfig(ram_size=args.ram_size, icount_shift=args.shift))
        load_program(machine, data)
    except (ValueError, LoadError) as exc:  # AsmError and LoadError are ValueErrors
        return _fail(f"{args.program}: {exc}")
    stdout = sys.stdout.buffer
    machine.console_sink = stdout.write
    try:
        result = machine.run(args.budget)
        executed = result.executed
        while result.reason is StopReason.FINISHER_RESET and executed < args.budget:
            # The guest asked for a reset: the machine has reset itself; run on, as QEMU does.
            result = machine.run(args.budget - executed)
            executed += result.executed
    except KeyboardInterrupt:
        stdout.flush()
        sys.stderr.write(f"detfuzz: interrupted at icount={machine.cpu.icount}\n")
        return 130
    except BrokenPipeError:
        # The reader went away (`| head`): stop quietly, as a shell tool would on SIGPIPE.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141
    stdout.flush()
    status = {
        StopReason.FINISHER_PASS: EXIT_OK,
        StopReason.FINISHER_FAIL: EXIT_FAILED,
    }.get(result.reason, EXIT_NO_FINISHER)
    code = "" if result.finisher_code is None else f" code={result.finisher_code}"
    sys.stderr.write(
        f"detfuzz: stop={result.reason.value}{code} icount={machine.cpu.icount} "
        f"pc={machine.cpu.pc:#010x}\n"
    )
    return status


def _fail(message: str) -> int:
    sys.stderr.write(f"detfuzz: {message}\n")
    return EXIT_USAGE


COMMANDS = {"run": cmd_run}


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return COMMANDS[args.command](args)


if __name__ == "__main__":
    raise SystemExit(main())
