"""`detfuzz record`, `detfuzz replay` and `detfuzz log dump`: QEMU-style record/replay of a
guest on the built-in machine, from the command line.

    detfuzz record guest.S -o guest.log      # run as `detfuzz run` does, logging every input
    detfuzz replay guest.log guest.S         # exit 0 iff the replay matches the log to its end
    detfuzz replay guest.log guest.S --seek 5000 --dump
    detfuzz replay guest.log guest.S --trace 4990:5010
    detfuzz log dump guest.log

Only the standard library is imported at module level (this module builds part of every
command's parser); `vm` is imported by the commands themselves.
"""

from __future__ import annotations

import argparse
import contextlib
import signal
import sys
from collections.abc import Callable
from dataclasses import dataclass
from types import FrameType
from typing import IO, TYPE_CHECKING, Any, Final

from fuzzer.cli_common import (
    DEFAULT_RUN_BUDGET,
    EXIT_BROKEN_PIPE,
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_OK,
    CliError,
    Console,
    add_host_seed_option,
    add_machine_options,
    check_program,
    finisher_status,
    load_into,
    machine_config,
    note,
    parse_count,
    read_program,
    run_through_resets,
    silence_stdout,
    stop_text,
)

if TYPE_CHECKING:
    from vm.config import MachineConfig
    from vm.machine import Machine
    from vm.replaylog import Log
    from vm.session import Session
    from vm.stop import RunResult

# The replay's stop when neither --budget nor --seek gives one: the log bounds a replay
# anyway (the vCPU never runs past its last INSTRUCTION record).
UNLIMITED: Final = 1 << 62

RawHelp = argparse.RawDescriptionHelpFormatter

RECORD_DESCRIPTION = """\
Run PROGRAM as `detfuzz run` does, in record mode: every non-deterministic input that
reaches the guest (HOST clock reads, entropy, interrupts, character/network/block input,
bottom halves) and every point the main loop gates on is written to LOG as it happens, one
event at a time, flushed after each, so a crash leaves a log readable up to its last
complete event. The log ends with END at the icount where the run stopped. Its header
carries the machine configuration's hash and the icount shift: replay it with the same
PROGRAM, --shift and --ram-size (any --host-seed).

The bytes the guest writes to UART0 go to stdout; the stop reason, finisher code, icount and
pc go to stderr, then the log's event count and size. A guest reset (finisher 0x7777) is run
through, as QEMU does. Ctrl-C stops the guest at the next instruction boundary and ends the
log there, so it still replays; a second Ctrl-C stops at once (END is still written, but
where the run was cut mid-instruction a replay may not reach it).
"""

RECORD_EPILOG = """\
exit status:
  0    the guest wrote "pass" to the finisher
  1    the guest wrote "fail" to the finisher (its code on stderr)
  2    bad usage or a bad input file, one line on stderr (LOG is then not created)
  3    the guest stopped without the finisher (budget, WFI with nothing pending, fault loop)
  130  interrupted by Ctrl-C (LOG ends with END where the guest stopped)
  141  the reader of stdout went away (LOG ends with END where the guest stopped)
"""

REPLAY_DESCRIPTION = """\
Replay LOG (written by `detfuzz record`) on PROGRAM: the log decides where every
interrupt, exception, checkpoint and async event happens and supplies every host value, and
any mismatch stops the replay with a report naming the log event. PROGRAM, --shift and
--ram-size must be those of the recording (the log's header carries the configuration's
hash); --host-seed may differ: no host decision may reach a replaying guest.

The guest's UART0 output goes to stdout and a one-line summary to stderr. With --dump or
--trace, stdout carries their report instead and the UART output is not printed (the MMIO
lines of --trace show the guest's UART writes).

  --seek N --dump  replay to icount N and print the machine state there: pc, icount,
                   registers, CSRs, virtual time, every device's saved fields, the state
                   digest and each component's digest
  --dump           the same at the end of the log
  --trace A:B      one line per instruction in the icount window [A, B) (the icount before
                   it, pc, word, disassembly), then a line per MMIO access it made and per log
                   event the replay consumed; the replay goes on to its end as usual
"""

REPLAY_EPILOG = """\
exit status:
  0    the replay matched the log to its end (or reached --seek N)
  1    the replay diverged from the log (the report on stderr names the event index),
       the log ends before the run does (a recording cut short), the budget ran out
       first, or --seek N lies beyond the log's end
  2    bad usage or bad input, one line on stderr: a log that is unreadable, corrupt or
       cut off inside its header, a bad program, or --shift/--ram-size other than the
       recording's (the log's header check)
  130  interrupted by Ctrl-C
  141  the reader of stdout went away
"""

LOG_DUMP_DESCRIPTION = """\
List LOG (written by `detfuzz record`) readably, like QEMU's scripts/replay-dump.py: a
header line (format, configuration hash, icount shift, event count, whether it ended), then
one line per event with its index, the icount at which it happens and the event. A log whose
writer was cut off mid-event is listed up to its last complete event, with a note.
"""

LOG_DUMP_EPILOG = """\
exit status:
  0    listed (a truncated log too, with a note)
  2    bad usage, or LOG is not a readable detfuzz replay log (one line on stderr)
  141  the reader of stdout went away
"""


# -- parsers ---------------------------------------------------------------------------------


def parse_window(text: str) -> tuple[int, int]:
    """`A:B`, an icount window with A < B."""
    first, sep, last = text.partition(":")
    if not sep:
        raise argparse.ArgumentTypeError(f"expected A:B, got {text!r}")
    start, end = parse_count(first), parse_count(last)
    if start >= end:
        raise argparse.ArgumentTypeError(f"empty window {text!r}: A must be below B")
    return start, end


def add_parsers(commands: Any) -> None:  # argparse's _SubParsersAction is private
    _add_record(commands)
    _add_replay(commands)
    _add_log(commands)


def _add_record(commands: Any) -> None:
    record = commands.add_parser(
        "record",
        help="run a guest program, recording a replay log",
        description=RECORD_DESCRIPTION,
        epilog=RECORD_EPILOG,
        formatter_class=RawHelp,
    )
    record.add_argument(
        "program",
        metavar="PROGRAM",
        help="ELF32 RISC-V executable, flat binary, or assembly source (.S/.s)",
    )
    record.add_argument(
        "-o", "--output", metavar="LOG", required=True, help="the replay log to write"
    )
    record.add_argument(
        "--budget",
        type=parse_count,
        default=DEFAULT_RUN_BUDGET,
        metavar="N",
        help=f"stop after this many instructions (default {DEFAULT_RUN_BUDGET:_})",
    )
    add_machine_options(record)
    add_host_seed_option(
        record, "seed of the host model: slicing, host clock, latencies, entropy (default 0)"
    )


def _add_replay(commands: Any) -> None:
    replay = commands.add_parser(
        "replay",
        help="replay a log recorded by `detfuzz record` and check it matches",
        description=REPLAY_DESCRIPTION,
        epilog=REPLAY_EPILOG,
        formatter_class=RawHelp,
    )
    replay.add_argument("log", metavar="LOG", help="the replay log")
    replay.add_argument(
        "program", metavar="PROGRAM", help="the program that was recorded (ELF, binary or .S/.s)"
    )
    add_host_seed_option(replay, "seed of the host model; need not be the recording's (default 0)")
    add_machine_options(replay)
    replay.add_argument(
        "--budget",
        type=parse_count,
        default=None,
        metavar="N",
        help="stop after this many instructions from the start, exit 1 if the log goes on "
        "(default: no limit, the log bounds the replay)",
    )
    replay.add_argument(
        "--seek",
        type=parse_count,
        metavar="N",
        help="stop the replay at icount N (exit 1 if N lies beyond the log's end)",
    )
    replay.add_argument(
        "--dump",
        action="store_true",
        help="print the machine state where the replay stops (at --seek N or the log's end)",
    )
    replay.add_argument(
        "--trace",
        type=parse_window,
        metavar="A:B",
        help="print an instruction trace of the icount window [A, B)",
    )


def _add_log(commands: Any) -> None:
    log = commands.add_parser(
        "log",
        help="inspect a replay log",
        description="Inspect a replay log written by `detfuzz record`.",
        epilog="exit status: that of the action (see `detfuzz log dump --help`); 2 for bad "
        "usage, with one line on stderr",
    )
    actions = log.add_subparsers(dest="log_command", required=True, parser_class=type(log))
    dump = actions.add_parser(
        "dump",
        help="list a replay log's events",
        description=LOG_DUMP_DESCRIPTION,
        epilog=LOG_DUMP_EPILOG,
        formatter_class=RawHelp,
    )
    dump.add_argument("log", metavar="LOG", help="the replay log")


# -- record ----------------------------------------------------------------------------------


class GracefulInterrupt:
    """While active, the first Ctrl-C asks the machine to stop at the next instruction
    boundary (a KeyboardInterrupt would leave it mid-instruction, its registers in a
    translated region's locals, and the log's END at an icount no replay can reach); the
    handler is then the default one again, so a second Ctrl-C raises at once."""

    def __init__(self, machine: Machine) -> None:
        self.machine = machine
        self.requested = False
        self._previous: Any = None
        self._installed = False

    def __enter__(self) -> GracefulInterrupt:
        try:
            self._previous = signal.signal(signal.SIGINT, self._handle)
            self._installed = True
        except ValueError:  # not the main thread: Ctrl-C raises as usual
            pass
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self._installed:
            signal.signal(signal.SIGINT, self._previous)

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        del signum, frame
        self.requested = True
        signal.signal(signal.SIGINT, signal.default_int_handler)
        _request_stop(self.machine)


def cmd_record(args: argparse.Namespace) -> int:
    from vm.machine import Machine
    from vm.replay import ReplayMode

    config = machine_config(args)
    image = read_program(args.program)
    check_program(config, args.program, image)  # before LOG is created or truncated
    stream = _open_log_for_writing(args.output)
    try:
        # The header is written (and flushed) as the machine is built.
        machine = Machine(
            config, host_seed=args.host_seed, mode=ReplayMode.RECORD, record_to=stream
        )
        load_into(machine, args.program, image)
        return _record(machine, args.budget, args.output)
    except OSError as exc:  # writing the log (stdout's broken pipe is the Console's)
        raise CliError(f"cannot write {args.output}: {exc.strerror or exc}") from None
    finally:
        # Every event was flushed as written: a failing close has nothing left to lose.
        with contextlib.suppress(OSError):
            stream.close()


def _open_log_for_writing(path: str) -> IO[bytes]:
    try:
        return open(path, "wb")  # cmd_record closes it
    except OSError as exc:
        raise CliError(f"cannot write {path}: {exc.strerror or exc}") from None


def _record(machine: Machine, budget: int, path: str) -> int:
    console = Console()
    console.on_broken = lambda: _request_stop(machine)
    machine.console_sink = console.write
    result: RunResult | None = None
    interrupt = GracefulInterrupt(machine)
    try:
        with interrupt:
            result = run_through_resets(
                machine, budget, stop=lambda: interrupt.requested or console.broken
            )
    except KeyboardInterrupt:  # the second Ctrl-C
        interrupt.requested = True
    machine.finish_recording()
    console.flush()
    if interrupt.requested:
        note(f"interrupted at icount={machine.cpu.icount}")
        status = EXIT_INTERRUPTED
    elif console.broken:
        status = EXIT_BROKEN_PIPE
    else:
        assert result is not None
        note(stop_text(machine, result))
        status = finisher_status(result.reason)
    _note_log_size(machine, path)
    return status


def _note_log_size(machine: Machine, path: str) -> None:
    events, size = machine.recording_stats()
    note(f"log {path}: {events} events, {size} bytes")


def _request_stop(machine: Machine) -> None:
    """Stop at the next instruction boundary: the host quits, which a recording logs
    (SHUTDOWN HOST_QUIT) and a replay of it stops at."""
    machine.request_quit()


# -- replay ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ReplayGoal:
    """Where the replay is to stop and what counts as success there."""

    seek: int | None  # stop at this icount; None: at the log's end
    budget: int | None
    log_end: int  # the icount the log reaches

    @property
    def stop_at(self) -> int:
        limits = [limit for limit in (self.seek, self.budget) if limit is not None]
        return min(limits, default=UNLIMITED)

    def target_text(self) -> str:
        if self.seek is not None:
            return f"--seek {self.seek}"
        return f"the log's end at icount {self.log_end}"


def cmd_replay(args: argparse.Namespace) -> int:
    from vm.replay import ReplayError

    log = _read_log(args.log)
    config = machine_config(args)
    image = read_program(args.program)
    # With a report on stdout, the guest's UART output would garble it: it goes nowhere.
    console = Console(enabled=not (args.dump or args.trace))
    machine: Machine | None = None
    try:
        machine = built = _replay_machine(config, args, log)
        load_into(machine, args.program, image)
        machine.console_sink = console.write
        console.on_broken = lambda: _request_stop(built)
        return _replay(machine, log, args, console)
    except ReplayError as exc:
        console.flush()
        _flush_stdout()
        sys.stderr.write(exc.render() + "\n")
        return EXIT_FAILED
    except KeyboardInterrupt:
        console.flush()
        where = "" if machine is None else f" at icount={machine.cpu.icount}"
        note(f"interrupted{where}")
        return EXIT_INTERRUPTED
    except BrokenPipeError:  # the --dump or --trace reader went away
        silence_stdout()
        return EXIT_BROKEN_PIPE


def _read_log(path: str) -> Log:
    from vm.replaylog import LogError, read_log_file

    try:
        return read_log_file(path)
    except LogError as exc:
        message = str(exc)
        raise CliError(message if path in message else f"{path}: {message}") from None


def _replay_machine(config: MachineConfig, args: argparse.Namespace, log: Log) -> Machine:
    from vm.machine import Machine
    from vm.replay import ReplayMode
    from vm.replaylog import LogError

    try:
        return Machine(config, host_seed=args.host_seed, mode=ReplayMode.REPLAY, replay_log=log)
    except LogError as exc:  # the header is of another configuration or icount shift
        raise CliError(
            f"{args.log}: {exc} (replay with the program and --shift/--ram-size it was "
            "recorded with)"
        ) from None


def _replay(machine: Machine, log: Log, args: argparse.Namespace, console: Console) -> int:
    from vm.session import Session

    goal = ReplayGoal(args.seek, args.budget, _log_icount(log))
    if goal.seek is not None and goal.seek > goal.log_end:
        note(f"--seek {goal.seek} lies beyond the end of {args.log} (icount {goal.log_end})")
        return EXIT_FAILED
    _note_log_state(args, log, goal)
    result = _run_phases(machine, Session(machine), log, goal, args.trace)
    console.flush()
    if console.broken:
        return EXIT_BROKEN_PIPE
    problem = _shortfall(machine, result, goal, log)
    if problem is not None:
        _flush_stdout()
        note(problem)
        return EXIT_FAILED
    if args.dump:
        from fuzzer.cli_inspect import state_lines

        for line in state_lines(machine, log):
            print(line)
    _flush_stdout()
    note(_success_text(machine, result, log, goal))
    return EXIT_OK


def _log_icount(log: Log) -> int:
    from vm.replaylog import EventKind

    instructions = (e.args[0] for e in log.events if e.kind is EventKind.INSTRUCTION)
    return sum(instructions)  # type: ignore[arg-type]


def _note_log_state(args: argparse.Namespace, log: Log, goal: ReplayGoal) -> None:
    """Say up front what will cut the replay short (it still goes as far as it can)."""
    if log.truncated:
        note(
            f"{args.log} is truncated after event {len(log.events) - 1} (its writer was cut "
            "off): the replay can go no further"
        )
    elif not log.ended:
        note(f"{args.log} has no END (its recording was cut short): the replay goes no further")
    if args.trace is not None and args.trace[0] >= goal.log_end:
        start, end = args.trace
        note(f"--trace {start}:{end} starts at or after the log's end (icount {goal.log_end})")


def _run_phases(
    machine: Machine,
    session: Session,
    log: Log,
    goal: ReplayGoal,
    window: tuple[int, int] | None,
) -> RunResult:
    """Replay to the trace window, single-step through it, then replay on to the stop."""
    from vm.stop import StopReason

    stop_at = goal.stop_at
    if window is not None and window[0] < stop_at:
        from fuzzer.cli_inspect import Tracer

        result = session.run_to(window[0])
        if result.reason is not StopReason.BUDGET:
            return result
        result = Tracer(machine, log, print).run(min(window[1], stop_at))
        if result.reason is not StopReason.BUDGET:
            return result
    return session.run_to(max(stop_at, machine.cpu.icount))


def _shortfall(machine: Machine, result: RunResult, goal: ReplayGoal, log: Log) -> str | None:
    """Why the replay did not reach its goal, or None if it did."""
    from vm.stop import StopReason

    icount = machine.cpu.icount
    if goal.seek is not None and icount == goal.seek:
        return None
    if goal.seek is None and (result.reason is StopReason.LOG_END or machine.replay_at_end()):
        return None
    target = goal.target_text()
    if result.reason is StopReason.BUDGET and icount == goal.budget:
        return f"the budget ran out at icount {icount}, before {target}"
    stopped = f"the replay stopped ({stop_text(machine, result)})"
    if not log.ended and _all_consumed(machine, log):
        return f"{stopped} after the last event of a log without END (a recording cut short)"
    return f"{stopped} before {target}"


def _all_consumed(machine: Machine, log: Log) -> bool:
    replayer = machine.replayer
    return replayer is not None and replayer.position()[0] >= len(log.events)


def _success_text(machine: Machine, result: RunResult, log: Log, goal: ReplayGoal) -> str:
    icount = machine.cpu.icount
    if goal.seek is not None:
        return f"replay reached icount {icount} (the log goes on to icount {goal.log_end})"
    return (
        f"replay matched the log to its end: {len(log.events)} events, icount={icount}, "
        f"guest stop={result.reason.value}"
    )


def _flush_stdout() -> None:
    try:
        sys.stdout.flush()
    except BrokenPipeError:
        silence_stdout()


# -- log dump --------------------------------------------------------------------------------


def cmd_log(args: argparse.Namespace) -> int:
    return LOG_COMMANDS[args.log_command](args)


def cmd_log_dump(args: argparse.Namespace) -> int:
    from vm.replaylog import dump_lines

    log = _read_log(args.log)
    try:
        for line in dump_lines(log):
            print(line)
        sys.stdout.flush()
    except BrokenPipeError:
        silence_stdout()
        return EXIT_BROKEN_PIPE
    if log.truncated:
        note(f"{args.log} is truncated: listed up to its last complete event")
    return EXIT_OK


LOG_COMMANDS: Final[dict[str, Callable[[argparse.Namespace], int]]] = {"dump": cmd_log_dump}

COMMANDS: Final[dict[str, Callable[[argparse.Namespace], int]]] = {
    "record": cmd_record,
    "replay": cmd_replay,
    "log": cmd_log,
}
