"""`detfuzz record`, `detfuzz replay` and `detfuzz log dump`: round trips, tampered and
mismatched logs, seek/dump against vm.session, traces, and every bad-usage path.

Commands run in-process (`main([...])`, output captured by capsysbinary), except the
Ctrl-C test, which needs a real process to signal.
"""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from fuzzer.cli import main
from vm import Machine, MachineConfig
from vm.asm import assemble
from vm.digest import digest
from vm.loader import load_program
from vm.replay import ReplayMode
from vm.replaylog import (
    Event,
    EventKind,
    LogError,
    encode_event,
    encode_header,
    read_log,
    read_log_file,
)
from vm.session import Session

ROOT = Path(__file__).resolve().parents[2]
HELLO = ROOT / "corpora" / "programs" / "hello.S"

# Reads the goldfish RTC (the HOST clock: CLOCK events) and prints 1..8 dots as its low bits
# say, then sleeps in WFI through three CLINT timer interrupts, reading the RTC in each.
TIMER_S = """
    .equ UART0, 0x10000000
    .equ FINISHER, 0x100000
    .equ RTC, 0x101000
    .equ MTIMECMP, 0x2004000
    .equ MTIME, 0x200bff8
_start:
    la      t0, handler
    csrw    mtvec, t0
    li      s0, RTC
    li      s1, UART0
    li      s2, 0
    lw      s3, 0(s0)
    andi    s3, s3, 7
    addi    s3, s3, 1
1:  li      t0, '.'
    sb      t0, 0(s1)
    addi    s3, s3, -1
    bnez    s3, 1b
    jal     ra, arm
    li      t0, 0x80
    csrs    mie, t0
    csrsi   mstatus, 8
2:  wfi
    li      t0, 3
    blt     s2, t0, 2b
    li      t0, FINISHER
    li      t1, 0x5555
    sw      t1, 0(t0)
3:  j       3b
arm:
    li      t2, MTIME
    lw      t3, 0(t2)
    addi    t3, t3, 20
    li      t2, MTIMECMP
    sw      zero, 4(t2)
    sw      t3, 0(t2)
    ret
    .align 2
handler:
    addi    s2, s2, 1
    lw      t1, 0(s0)
    li      t0, 'T'
    sb      t0, 0(s1)
    mv      s5, ra
    jal     ra, arm
    mv      ra, s5
    mret
"""
# An access fault (not counted by icount), then an ECALL (counted); the handler skips both.
FAULT_S = """
_start:
    la      t0, handler
    csrw    mtvec, t0
    li      t1, 0x40000000
    lw      t2, 0(t1)
    ecall
    li      t0, 0x100000
    li      t1, 0x5555
    sw      t1, 0(t0)
    .align 2
handler:
    csrr    t3, mepc
    addi    t3, t3, 4
    csrw    mepc, t3
    mret
"""
SPIN_S = "li t0, 0x10000000\nli t1, 'A'\nsb t1, 0(t0)\n1: addi a0, a0, 1\nj 1b\n"
PASS_S = "li t0, 0x100000\nli t1, 0x5555\nsw t1, 0(t0)\n"

Run = Callable[..., tuple[int, bytes, str]]


@pytest.fixture
def detfuzz(capsysbinary: pytest.CaptureFixture[bytes]) -> Run:
    """Run `detfuzz ARGS` in-process: (exit status, stdout bytes, stderr text)."""

    def run(*args: object) -> tuple[int, bytes, str]:
        try:
            status = main([str(arg) for arg in args])
        except SystemExit as exc:  # argparse's usage errors and --help
            status = exc.code if isinstance(exc.code, int) else 2
        out, err = capsysbinary.readouterr()
        return status, out, err.decode()

    return run


def write(tmp_path: Path, name: str, content: str | bytes) -> Path:
    path = tmp_path / name
    if isinstance(content, str):
        path.write_text(content)
    else:
        path.write_bytes(content)
    return path


def record(detfuzz: Run, tmp_path: Path, program: Path, *options: object) -> Path:
    log = tmp_path / f"{program.stem}.log"
    status, _, err = detfuzz("record", program, "-o", log, *options)
    assert status == 0, err
    return log


def rewrite(log: Path, edit: Callable[[list[Event]], list[Event]], *, tail: bytes = b"") -> Path:
    """The log with its events edited (decoded, changed, encoded again) and `tail` bytes
    appended, written beside it."""
    decoded = read_log_file(log)
    events = edit(list(decoded.events))
    out = log.with_name(f"tampered-{log.name}")
    data = encode_header(decoded.header) + b"".join(map(encode_event, events)) + tail
    out.write_bytes(data)
    return out


def index_of(events: list[Event], kind: EventKind, nth: int = 0) -> int:
    return [i for i, event in enumerate(events) if event.kind is kind][nth]


def assert_one_line(status: int, out: bytes, err: str) -> str:
    assert status == 2, err
    assert "Traceback" not in err
    assert err.count("\n") == 1 and err.startswith("detfuzz: "), err
    assert out == b""
    return err


def replay_machine(log: Path, program: Path) -> Machine:
    machine = Machine(MachineConfig(), mode=ReplayMode.REPLAY, replay_log=log.read_bytes())
    load_program(machine, assemble(program.read_text()))
    return machine


# -- record and replay ---------------------------------------------------------------------


def test_record_then_replay_gives_the_same_output_with_any_host_seed(detfuzz, tmp_path):
    log = tmp_path / "hello.log"
    status, recorded, err = detfuzz("record", HELLO, "-o", log, "--host-seed", 5)
    assert status == 0, err
    assert recorded.startswith(b"hello from detfuzz, minstret = 0x")
    assert "stop=finisher-pass" in err
    events = len(read_log_file(log).events)
    assert f"{events} events, {log.stat().st_size} bytes" in err
    for seed in (5, 0, 2**64 - 1):
        status, replayed, err = detfuzz("replay", log, HELLO, "--host-seed", seed)
        assert status == 0, err
        assert replayed == recorded
        assert f"matched the log to its end: {events} events" in err


def test_a_guest_reading_the_rtc_and_taking_timer_interrupts_replays(detfuzz, tmp_path):
    program = write(tmp_path, "timer.S", TIMER_S)
    log = tmp_path / "timer.log"
    status, recorded, err = detfuzz("record", program, "-o", log, "--host-seed", 1)
    assert status == 0, err
    assert re.fullmatch(rb"\.{1,8}TTT", recorded)
    kinds = [event.kind for event in read_log_file(log).events]
    assert kinds.count(EventKind.CLOCK) == 4 and kinds.count(EventKind.INTERRUPT) == 3
    status, replayed, err = detfuzz("replay", log, program, "--host-seed", 99)
    assert status == 0, err
    assert replayed == recorded


def test_record_keeps_the_run_exit_statuses_and_replay_matches_where_it_stopped(detfuzz, tmp_path):
    program = write(tmp_path, "spin.S", SPIN_S)
    log = tmp_path / "spin.log"
    status, out, err = detfuzz("record", program, "-o", log, "--budget", 1000)
    assert status == 3 and out == b"A"
    assert "stop=budget" in err and "icount=1000" in err
    assert read_log_file(log).ended
    status, out, err = detfuzz("replay", log, program)
    assert status == 0, err
    assert out == b"A" and "icount=1000" in err


def test_record_runs_through_a_guest_reset(detfuzz, tmp_path):
    # Resets once (s2 survives the reset: QEMU keeps the GPRs the reset vector does not
    # set), then passes.
    program = write(
        tmp_path,
        "reset.S",
        "li t0, 0x100000\nbnez s2, 1f\nli s2, 1\nli t1, 0x7777\nsw t1, 0(t0)\n"
        "1: li t1, 0x5555\nsw t1, 0(t0)\n",
    )
    log = record(detfuzz, tmp_path, program)
    kinds = [event.kind for event in read_log_file(log).events]
    assert EventKind.SHUTDOWN in kinds and kinds.count(EventKind.CHECKPOINT) == 2  # INIT, RESET
    status, _, err = detfuzz("replay", log, program)
    assert status == 0, err


def test_a_bad_program_creates_no_log(detfuzz, tmp_path):
    log = tmp_path / "out.log"
    assert_one_line(*detfuzz("record", write(tmp_path, "bad.S", "frob\n"), "-o", log))
    assert not log.exists()


def record_until_signalled(tmp_path: Path, signum: int) -> tuple[int, bytes, bytes, Path]:
    """Record SPIN_S in a real process and send it `signum` once its run is under way."""
    program = write(tmp_path, "spin.S", SPIN_S)
    log = tmp_path / "spin.log"
    command = ["record", str(program), "-o", str(log), "--budget", str(10**12)]
    proc = subprocess.Popen(
        [sys.executable, "-m", "fuzzer", *command],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 30
        # The guest's first character write is logged once the run (and its handler) is on.
        while not _has_char_write(log) and time.monotonic() < deadline:
            time.sleep(0.02)
        time.sleep(0.05)
        proc.send_signal(signum)
        out, err = proc.communicate(timeout=30)
    finally:
        proc.kill()
    return proc.returncode, out, err, log


def test_ctrl_c_ends_the_log_where_the_guest_stopped_and_it_replays(detfuzz, tmp_path):
    status, out, err, log = record_until_signalled(tmp_path, signal.SIGINT)
    assert status == 130, err
    assert out == b"A" and b"interrupted at icount=" in err and b"Traceback" not in err
    assert read_log_file(log).ended
    status, replayed, err = detfuzz("replay", log, tmp_path / "spin.S")
    assert status == 0, err
    assert replayed == b"A"


def test_a_killed_recording_leaves_every_event_written_so_far(detfuzz, tmp_path):
    status, _, _, log = record_until_signalled(tmp_path, signal.SIGKILL)
    assert status == -signal.SIGKILL
    events = read_log_file(log).events  # flushed after each event: nothing half-written
    assert [e.kind for e in events] == [
        EventKind.CHECKPOINT,
        EventKind.INSTRUCTION,
        EventKind.CHAR_WRITE,
    ]
    status, _, err = detfuzz("replay", log, tmp_path / "spin.S")
    assert status == 1
    assert "has no END" in err
    assert "replay log-ended at icount 9, event 3: the log ends without END" in err


def _has_char_write(log: Path) -> bool:
    try:
        return any(e.kind is EventKind.CHAR_WRITE for e in read_log_file(log).events)
    except LogError:
        return False


# -- replays that fail -----------------------------------------------------------------------


def _bump_instruction(events: list[Event]) -> list[Event]:
    i = index_of(events, EventKind.INSTRUCTION, 2)
    events[i] = Event.instruction(events[i].args[0] + 1)  # type: ignore[operator]
    return events


def _accept_more(events: list[Event]) -> list[Event]:
    i = index_of(events, EventKind.CHAR_WRITE, 3)
    events[i] = Event.char_write(1, 2)
    return events


def _drop_char_write(events: list[Event]) -> list[Event]:
    del events[index_of(events, EventKind.CHAR_WRITE, 3)]
    return events


def _flip_clock(events: list[Event]) -> list[Event]:
    # The guest prints as many dots as the clock's low bits say: one more or fewer here.
    i = index_of(events, EventKind.CLOCK)
    clock, value = events[i].args
    assert isinstance(value, int)
    events[i] = Event(EventKind.CLOCK, (clock, value ^ 1))
    return events


def _cut_after_half(events: list[Event]) -> list[Event]:
    return events[: len(events) // 2]


@pytest.mark.parametrize(
    ("program", "edit", "kind"),
    [
        (HELLO, _bump_instruction, "divergence"),
        (HELLO, _accept_more, "divergence"),
        (HELLO, _drop_char_write, "divergence"),
        # One dot fewer leaves the log waiting for a write that never comes (a stall); one
        # more is a write the log does not have there (a divergence).
        ("timer", _flip_clock, "(divergence|stall)"),
        (HELLO, _cut_after_half, "log-ended"),
    ],
    ids=["instruction-count", "char-write-payload", "dropped-event", "clock-value", "cut"],
)
def test_a_tampered_log_fails_with_a_report_naming_the_event(
    detfuzz, tmp_path, program, edit, kind
):
    if program == "timer":
        program = write(tmp_path, "timer.S", TIMER_S)
    tampered = rewrite(record(detfuzz, tmp_path, program), edit)
    status, _, err = detfuzz("replay", tampered, program)
    assert status == 1, err
    assert re.search(rf"^replay {kind} at icount \d+, event \d+: ", err, re.MULTILINE), err
    assert "expected:" in err and "found:" in err and "Traceback" not in err


def test_a_log_truncated_mid_event_replays_to_its_cut_and_fails(detfuzz, tmp_path):
    log = record(detfuzz, tmp_path, HELLO)
    data = log.read_bytes()
    cut = write(tmp_path, "cut.log", data[: len(data) // 2])
    assert read_log_file(cut).truncated
    status, _, err = detfuzz("replay", cut, HELLO)
    assert status == 1
    assert "is truncated after event" in err
    assert re.search(r"replay log-ended at icount \d+, event \d+", err), err


def test_a_log_without_end_fails_where_the_guest_stops(detfuzz, tmp_path):
    unended = rewrite(record(detfuzz, tmp_path, HELLO), lambda events: events[:-1])
    status, out, err = detfuzz("replay", unended, HELLO)
    assert status == 1
    assert out.startswith(b"hello from detfuzz")
    assert "has no END" in err
    assert "stop=finisher-pass" in err and "a log without END" in err


def test_replaying_another_program_diverges(detfuzz, tmp_path):
    log = record(detfuzz, tmp_path, HELLO)
    status, _, err = detfuzz("replay", log, write(tmp_path, "pass.S", PASS_S))
    assert status == 1
    assert re.search(r"replay divergence at icount \d+, event \d+", err), err


def test_the_budget_running_out_before_the_log_end_fails(detfuzz, tmp_path):
    log = record(detfuzz, tmp_path, HELLO)
    status, _, err = detfuzz("replay", log, HELLO, "--budget", 100)
    assert status == 1
    assert "the budget ran out at icount 100, before the log's end at icount" in err


@pytest.mark.parametrize(
    ("recorded", "replayed", "message"),
    [
        (["--shift", "3"], [], "icount shift 3 is not the machine's 0"),
        ([], ["--shift", "2"], "icount shift 0 is not the machine's 2"),
        ([], ["--ram-size", "4M"], "replay log is of machine configuration"),
    ],
    ids=["recorded-shift", "replayed-shift", "ram-size"],
)
def test_a_log_of_another_machine_configuration_exits_two(
    detfuzz, tmp_path, recorded, replayed, message
):
    log = record(detfuzz, tmp_path, HELLO, *recorded)
    err = assert_one_line(*detfuzz("replay", log, HELLO, *replayed))
    assert message in err


def test_a_log_recorded_with_a_shift_replays_with_it(detfuzz, tmp_path):
    log = record(detfuzz, tmp_path, HELLO, "--shift", "3", "--ram-size", "4M")
    status, _, err = detfuzz("replay", log, HELLO, "--shift", "3", "--ram-size", "4M")
    assert status == 0, err


@pytest.mark.parametrize(
    "content",
    [b"", b"garbage\n", b"\x81\xa5magic\xa3bad", bytes(range(256))],
    ids=["empty", "text", "bad-magic", "binary"],
)
def test_a_garbage_log_exits_two(detfuzz, tmp_path, content):
    log = write(tmp_path, "junk.log", content)
    assert "junk.log" in assert_one_line(*detfuzz("replay", log, HELLO))
    assert "junk.log" in assert_one_line(*detfuzz("log", "dump", log))


def test_bad_input_is_one_line_even_for_a_truncated_log(detfuzz, tmp_path):
    data = record(detfuzz, tmp_path, HELLO).read_bytes()
    cut = write(tmp_path, "cut.log", data[: len(data) // 2])
    err = assert_one_line(*detfuzz("replay", cut, HELLO, "--shift", "2", "--seek", 10**9))
    assert "icount shift 0 is not the machine's 2" in err


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full")
def test_a_log_that_cannot_be_written_exits_two(detfuzz):
    err = assert_one_line(*detfuzz("record", HELLO, "-o", "/dev/full"))
    assert "cannot write /dev/full: No space left on device" in err


def test_a_log_cut_inside_its_header_exits_two(detfuzz, tmp_path):
    data = record(detfuzz, tmp_path, HELLO).read_bytes()
    cut = write(tmp_path, "cut.log", data[:10])
    assert "truncated header" in assert_one_line(*detfuzz("replay", cut, HELLO))


# -- log dump --------------------------------------------------------------------------------


def test_log_dump_lists_every_event_with_its_icount(detfuzz, tmp_path):
    log = record(detfuzz, tmp_path, HELLO)
    events = read_log_file(log).events
    status, out, err = detfuzz("log", "dump", log)
    assert status == 0 and err == ""
    lines = out.decode().splitlines()
    assert lines[0].startswith("replay log format 1, config ")
    assert f"{len(events)} events, ended" in lines[0]
    assert len(lines) == 1 + len(events)
    assert re.fullmatch(r"0 +icount +0 +CHECKPOINT INIT", lines[1].strip())
    assert re.fullmatch(r"\d+ +icount +249 +END", lines[-1].strip())
    assert sum("CHAR_WRITE" in line for line in lines) == 42


def test_log_dump_of_a_truncated_log_lists_up_to_the_cut_with_a_note(detfuzz, tmp_path):
    data = record(detfuzz, tmp_path, HELLO).read_bytes()
    cut = write(tmp_path, "cut.log", data[:-1])  # inside END's one byte: cut after SHUTDOWN
    whole = len(read_log(data).events)
    status, out, err = detfuzz("log", "dump", cut)
    assert status == 0
    lines = out.decode().splitlines()
    assert f"{whole - 1} events, truncated" in lines[0]
    assert lines[-1] == f"(truncated: incomplete bytes after event {whole - 2})"
    assert "SHUTDOWN GUEST_PASS" in lines[-2]
    assert "cut.log is truncated" in err


def test_log_dump_of_a_log_cut_mid_payload(detfuzz, tmp_path):
    log = record(detfuzz, tmp_path, write(tmp_path, "timer.S", TIMER_S))
    data = log.read_bytes()
    # The first CLOCK event's value is an 8-byte int: cut three bytes into it.
    decoded = read_log(data)
    head = encode_header(decoded.header)
    first = index_of(list(decoded.events), EventKind.CLOCK)
    before = head + b"".join(encode_event(e) for e in decoded.events[:first])
    cut = write(tmp_path, "cut.log", data[: len(before) + 5])
    status, out, _ = detfuzz("log", "dump", cut)
    assert status == 0
    assert out.decode().splitlines()[-1] == f"(truncated: incomplete bytes after event {first - 1})"


# -- seek, dump and trace ----------------------------------------------------------------------


def dumped(out: bytes) -> dict[str, str]:
    """`name value` lines of a dump (registers by ABI name, CSRs, digest, components)."""
    fields: dict[str, str] = {}
    for line in out.decode().splitlines():
        parts = line.split()
        if len(parts) == 3 and re.fullmatch(r"x\d+", parts[0]):
            fields[parts[1]] = parts[2]
        elif len(parts) == 2:
            fields[parts[0]] = parts[1]
    return fields


@pytest.mark.parametrize("icount", [0, 57, 120, 249])
def test_seek_dump_prints_the_state_of_a_straight_replay_stopped_there(detfuzz, tmp_path, icount):
    log = record(detfuzz, tmp_path, HELLO)
    status, out, err = detfuzz("replay", log, HELLO, "--seek", icount, "--dump")
    assert status == 0, err
    assert f"replay reached icount {icount}" in err
    shown = dumped(out)

    straight = replay_machine(log, HELLO)
    Session(straight).run_to(icount)
    assert shown["icount"] == str(icount)
    assert shown["pc"] == f"{straight.cpu.pc:#010x}"
    assert shown["digest"] == digest(straight).hex()
    for number, name in ((8, "s0"), (9, "s1"), (5, "t0"), (10, "a0")):
        assert shown[name] == f"{straight.cpu.x[number]:#010x}"

    # And so does a seek back to it through a periodic snapshot, after the whole replay.
    seeking = replay_machine(log, HELLO)
    session = Session(seeking, snapshot_every=50)
    session.run_to(249)
    session.seek(icount)
    assert shown["digest"] == digest(seeking).hex()


def test_dump_shows_registers_csrs_devices_and_component_digests(detfuzz, tmp_path):
    program = write(tmp_path, "timer.S", TIMER_S)
    log = record(detfuzz, tmp_path, program)
    status, out, err = detfuzz("replay", log, program, "--dump")  # at the log's end
    assert status == 0, err
    text = out.decode()
    for needle in ("registers:", "x10 a0", "x31 t6", "csrs:", "mtvec", "minstret", "mhartid"):
        assert needle in text
    assert re.search(r"virtual time +\d+ ns \(icount shift 0\)", text)
    assert "clint (clint):" in text and "mtimecmp = " in text
    assert "uart0 (ns16550a):" in text and "lsr = " in text
    assert "rtc (goldfish_rtc):" in text
    assert re.search(r"^digest +[0-9a-f]{64}$", text, re.MULTILINE)
    for component in ("cpu", "clock", "rom", "uart0", "clint", r"ram\[0x80000000..0x80000fff\]"):
        assert re.search(rf"^  {component} +[0-9a-f]{{64}}$", text, re.MULTILINE), component
    assert "TTT" not in text  # the report replaces the UART output on stdout


def test_seek_beyond_the_log_end_exits_one(detfuzz, tmp_path):
    log = record(detfuzz, tmp_path, HELLO)
    status, out, err = detfuzz("replay", log, HELLO, "--seek", 250, "--dump")
    assert status == 1 and out == b""
    assert "--seek 250 lies beyond the end of" in err and "(icount 249)" in err


def test_trace_prints_each_instruction_its_mmio_and_events(detfuzz, tmp_path):
    log = record(detfuzz, tmp_path, HELLO)
    status, out, err = detfuzz("replay", log, HELLO, "--trace", "10:20")
    assert status == 0, err
    assert "matched the log to its end" in err
    lines = out.decode().splitlines()
    insns = [line for line in lines if line.startswith("icount")]
    assert [int(line.split()[1]) for line in insns] == list(range(10, 20))
    assert "pc 0x80000014  00548023  sb t0, 0(s1)" in insns[1]
    assert "    mmio write uart0+0x000 size 1 value 0x68" in lines  # 'h'
    assert "    event #2 @icount 12: CHAR_WRITE result=1 accepted=1" in lines


def test_trace_shows_a_faulting_instruction_and_the_handler_at_one_icount(detfuzz, tmp_path):
    program = write(tmp_path, "fault.S", FAULT_S)
    log = record(detfuzz, tmp_path, program)
    status, out, err = detfuzz("replay", log, program, "--trace", "0:1000")
    assert status == 0, err
    lines = out.decode().splitlines()
    fault = next(i for i, line in enumerate(lines) if "lw t2, 0(t1)" in line)
    assert lines[fault + 1] == "    event #2 @icount 10: EXCEPTION"
    assert lines[fault].split()[1] == lines[fault + 2].split()[1] == "10"  # not counted
    assert "csrrs t3, mepc, zero" in lines[fault + 2]
    assert "    mmio write finisher+0x000 size 4 value 0x00005555" in lines


def test_trace_of_the_timer_guest_shows_interrupts_and_clock_reads(detfuzz, tmp_path):
    program = write(tmp_path, "timer.S", TIMER_S)
    log = record(detfuzz, tmp_path, program)
    status, out, err = detfuzz("replay", log, program, "--trace", "0:500", "--seek", 60)
    assert status == 0, err
    text = out.decode()
    assert re.search(r"event #\d+ @icount \d+: INTERRUPT", text)
    assert re.search(r"mmio read  rtc\+0x000 size 4 value 0x[0-9a-f]{8}", text)
    assert re.search(r"event #\d+ @icount \d+: CLOCK HOST \d+", text)
    assert max(int(line.split()[1]) for line in text.splitlines() if line[:6] == "icount") == 59


# -- help and bad usage ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("command", "needles"),
    [
        (["record"], ["--output", "--budget", "--shift", "--ram-size", "--host-seed", "130"]),
        (["replay"], ["--seek", "--dump", "--trace", "--budget", "--host-seed", "exit status"]),
        (["log", "dump"], ["LOG", "truncated", "exit status"]),
        (["log"], ["dump", "exit status"]),
    ],
    ids=["record", "replay", "log-dump", "log"],
)
def test_help_is_complete(detfuzz, command, needles):
    status, out, _ = detfuzz(*command, "--help")
    assert status == 0
    for needle in needles:
        assert needle in out.decode()


@pytest.mark.parametrize(
    "args",
    [
        ["record"],
        ["record", "{prog}"],
        ["record", "{prog}", "-o", "{out}", "--budget", "-1"],
        ["record", "{prog}", "-o", "{out}", "--host-seed", "-1"],
        ["record", "{prog}", "-o", "{out}", "--host-seed", str(2**64)],
        ["record", "{prog}", "-o", "{out}", "--shift", "11"],
        ["record", "{prog}", "-o", "{out}", "--ram-size", "big"],
        ["record", "{tmp}/nope.S", "-o", "{out}"],
        ["record", "{prog}", "-o", "{tmp}"],
        ["record", "{prog}", "-o", "{tmp}/no/such/dir/x.log"],
        ["replay"],
        ["replay", "{log}"],
        ["replay", "{log}", "{prog}", "--seek", "-5"],
        ["replay", "{log}", "{prog}", "--budget", "lots"],
        ["replay", "{log}", "{prog}", "--trace", "5"],
        ["replay", "{log}", "{prog}", "--trace", "9:3"],
        ["replay", "{log}", "{prog}", "--trace", "a:b"],
        ["replay", "{log}", "{prog}", "--host-seed", "x"],
        ["replay", "{log}", "{prog}", "--frob"],
        ["replay", "{tmp}/missing.log", "{prog}"],
        ["replay", "{tmp}", "{prog}"],
        ["replay", "{log}", "{tmp}/missing.S"],
        ["replay", "{log}", "{tmp}/bad.S"],
        ["log"],
        ["log", "frob"],
        ["log", "dump"],
        ["log", "dump", "{log}", "extra"],
        ["log", "dump", "{tmp}/missing.log"],
        ["log", "dump", "{tmp}"],
    ],
    ids=lambda args: re.sub(r"[{}/]+", "", " ".join(args)).replace(" ", "_"),
)
def test_bad_usage_exits_two_with_one_line(detfuzz, tmp_path, args):
    program = write(tmp_path, "prog.S", PASS_S)
    write(tmp_path, "bad.S", "nop\nfrobnicate a0\n")
    log = record(detfuzz, tmp_path, program)
    names = {"prog": program, "log": log, "out": tmp_path / "new.log", "tmp": tmp_path}
    argv = [arg.format(**names) for arg in args]
    assert_one_line(*detfuzz(*argv))
    assert not (tmp_path / "new.log").exists()
