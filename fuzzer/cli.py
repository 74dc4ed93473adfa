"""The `detfuzz` command line.

Exit statuses, pinned for every command now and later:
  0  success (for `run`: the guest wrote "pass" to the finisher)
  1  the thing checked failed (for `run`: finisher fail, the guest's code on stderr)
  2  bad usage or a bad input file: one clear line on stderr, no traceback
  3  the guest stopped without the finisher (budget, idle forever, fault loop)
  130 interrupted (Ctrl-C); 141 the reader of stdout went away

Only the standard library and `vm` are imported on the `run` path, so start-up stays short.
The record/replay commands live in `fuzzer.cli_replay`, their shared helpers in
`fuzzer.cli_common`.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence

from fuzzer import cli_corpus, cli_fuzz, cli_replay, cli_report
from fuzzer.cli_common import (
    DEFAULT_RUN_BUDGET,
    EXIT_BROKEN_PIPE,
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_NO_FINISHER,
    EXIT_OK,
    EXIT_USAGE,
    CliError,
    Parser,
    add_machine_options,
    finisher_status,
    load_into,
    machine_config,
    note,
    parse_int,
    read_program,
    run_through_resets,
    silence_stdout,
    stop_text,
)

__all__ = [
    "DEFAULT_RUN_BUDGET",
    "EXIT_FAILED",
    "EXIT_NO_FINISHER",
    "EXIT_OK",
    "EXIT_USAGE",
    "build_parser",
    "main",
]


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="detfuzz", description="A determinism fuzzer for record/replay emulation.")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=Parser)
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
        "program",
        metavar="PROGRAM",
        help="ELF32 RISC-V executable, flat binary, or assembly source (.S/.s)",
    )
    run.add_argument(
        "--budget",
        type=parse_int,
        default=DEFAULT_RUN_BUDGET,
        metavar="N",
        help=f"stop after this many instructions (default {DEFAULT_RUN_BUDGET:_})",
    )
    add_machine_options(run)
    cli_replay.add_parsers(commands)
    cli_report.add_parsers(commands)
    cli_fuzz.add_parsers(commands)
    cli_corpus.add_parsers(commands)
    return parser


def cmd_run(args: argparse.Namespace) -> int:
    from vm import Machine

    if args.budget < 0:
        raise CliError("--budget must be >= 0")
    image = read_program(args.program)
    machine = Machine(machine_config(args))
    load_into(machine, args.program, image)
    stdout = sys.stdout.buffer
    machine.console_sink = stdout.write
    try:
        result = run_through_resets(machine, args.budget)
    except KeyboardInterrupt:
        stdout.flush()
        note(f"interrupted at icount={machine.cpu.icount}")
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        # The reader went away (`| head`): stop quietly, as a shell tool would on SIGPIPE.
        silence_stdout()
        return EXIT_BROKEN_PIPE
    stdout.flush()
    note(stop_text(machine, result))
    return finisher_status(result.reason)


COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {
    "run": cmd_run,
    **cli_replay.COMMANDS,
    **cli_report.COMMANDS,
    **cli_fuzz.COMMANDS,
    **cli_corpus.COMMANDS,
}


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return COMMANDS[args.command](args)
    except CliError as exc:
        note(str(exc))
        return exc.status
    except KeyboardInterrupt:  # Ctrl-C outside a guest run (reading, assembling)
        note("interrupted")
        return EXIT_INTERRUPTED
    except BrokenPipeError:  # `detfuzz show R | head`: the reader went away
        silence_stdout()
        return EXIT_BROKEN_PIPE


if __name__ == "__main__":
    raise SystemExit(main())
