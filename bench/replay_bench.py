"""What record/replay costs: run-time overhead, log size, and seek time against the snapshot
interval.

    python bench/replay_bench.py [--quick] [--rounds 7] [--iters 1350] [--dev-loops 20000]
                                 [--seek-insns 4000000] [--ks 25000,100000,400000,1600000]
                                 [--seeks 40] [--seed 1] [--only overhead,log,seek]
                                 [--json [PATH]]

Three measurements (README.md, "replay_bench.py", says how to read them):

``overhead``
    Wall time of the whole run in mode none, record and replay, for the CPU guest
    (bench/prog.S at ITERS, as cpu_bench.py builds it) and a device guest written here
    (UART output and input, CLINT timer interrupts, RTC reads and alarms through the PLIC).
    Every (round, guest, mode) runs in a fresh subprocess, because compiled code is cached
    between machines of one process (vm/translate.py) and the first run would pay for the
    others. Rounds are interleaved and the mode order rotates each round. Timed: the run
    calls, plus finishing the log in record and decoding it in replay; not timed: start-up,
    building the machine, loading the program, the digest. Every run is checked against a
    recording made up front: same final icount, digest and console; a record run writes
    the very same log; a replay ends at the log's END (LOG_END).

``log``
    Size of that recording for each guest and for corpora/programs/hello.S: bytes per
    event, events and bytes per million instructions, and the breakdown per event kind
    (vm.replaylog.log_stats).

``seek``
    The CPU guest recorded for --seek-insns instructions, then replayed under
    vm.session.Session(snapshot_every=K) for each K and for "start only" (the snapshot at
    icount 0 and no other): the time to run to the end taking the snapshots, then seeks to
    one seeded pseudo-random sequence of icounts over the whole run (forward and back).
    Each seek's digest is checked against a straight replay stopped at that icount.

The replays run with another host seed than the recordings: the host must not matter.
Exit status: 0 if every check passed, 1 if any failed (its figures are left out).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import random
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from build import build_prog

BENCH_DIR = Path(__file__).resolve().parent
REPO_ROOT = BENCH_DIR.parent
sys.path.insert(0, str(REPO_ROOT))

from vm import Machine, MachineConfig  # noqa: E402
from vm.asm import assemble  # noqa: E402
from vm.backends import Stimulus  # noqa: E402
from vm.config import CLINT, FINISHER, PLIC, RTC, UART0  # noqa: E402
from vm.devices import clint, plic, rtc, uart  # noqa: E402
from vm.digest import digest  # noqa: E402
from vm.loader import load_program  # noqa: E402
from vm.replay import ReplayError, ReplayMode  # noqa: E402
from vm.replaylog import EventKind, Log, LogStats, log_stats, read_log  # noqa: E402
from vm.session import SeekError, Session  # noqa: E402
from vm.stop import StopReason  # noqa: E402

HELLO_SOURCE = REPO_ROOT / "corpora" / "programs" / "hello.S"
CONFIG = MachineConfig(ram_size=1 << 20)  # as cpu_bench.py: the guests need far less
RECORD_SEED = 1  # host seed of mode none and of every recording
REPLAY_SEED = 2  # another host for every replay: a correct replay does not notice
BUDGET = 1 << 40  # every guest ends through the finisher long before
REPLAY_RUNS_MAX = 4  # run() calls a replay may need to reach LOG_END (finisher stop first)
GOAL = 1.15  # the issue's acceptance bound on record/none and replay/none
MODES = (ReplayMode.NONE, ReplayMode.RECORD, ReplayMode.REPLAY)

# Defaults and --quick: (rounds, iters, dev loops, seek instructions, Ks, seeks).
DEFAULTS = (7, 1350, 20_000, 4_000_000, "25000,100000,400000,1600000", 40)
QUICK = (5, 135, 2_500, 1_000_000, "25000,100000,400000", 15)


# --- the guests ---

# The device guest: LOOPS times, WORK iterations of ALU filler, then one RTC read (a HOST
# clock read: a CLOCK event), a poll of the UART receiver (host input, an ASYNC CHAR_READ
# event, is echoed) and every DOT_EVERY loops a '.' (a CHAR_WRITE event). Meanwhile the
# CLINT interrupts every TICK ticks (a CLOCK_VIRTUAL checkpoint and an INTERRUPT) and the
# RTC alarm, re-armed RTC_DELTA ns of HOST time ahead each time, interrupts through the
# PLIC (a CLOCK_HOST checkpoint, an INTERRUPT and more CLOCK reads).
DEV_GUEST = r"""
_start:
    la      t0, trap
    csrw    mtvec, t0
    li      t0, PLIC_RTC_PRIORITY       # the RTC's PLIC source: priority 1, enabled
    li      t1, 1
    sw      t1, 0(t0)
    li      t0, PLIC_ENABLE
    li      t1, RTC_ENABLE_BIT
    sw      t1, 0(t0)
    li      t0, PLIC_THRESHOLD
    sw      zero, 0(t0)
    li      t0, RTC
    li      t1, 1
    sw      t1, RTC_IRQ_ENABLED(t0)
    call    arm_alarm
    call    arm_tick
    li      t0, MIE_BITS
    csrw    mie, t0
    csrsi   mstatus, MSTATUS_MIE
    li      s2, LOOPS
loop:
    li      t0, WORK
1:  addi    s4, s4, 7
    xor     s5, s5, s4
    addi    t0, t0, -1
    bnez    t0, 1b
    li      t0, RTC
    lw      t1, RTC_TIME_LOW(t0)
    lw      t2, RTC_TIME_HIGH(t0)
    xor     s3, s3, t1
    li      t0, UART
    lbu     t1, UART_LSR(t0)
    andi    t1, t1, LSR_DR
    beqz    t1, 2f
    lbu     t1, 0(t0)
    sb      t1, 0(t0)
2:  andi    t1, s2, DOT_EVERY - 1
    bnez    t1, 3f
    li      t1, '.'
    sb      t1, 0(t0)
3:  addi    s2, s2, -1
    bnez    s2, loop
    csrci   mstatus, MSTATUS_MIE
    li      t1, '\n'
    sb      t1, 0(t0)
    li      t0, FINISHER
    li      t1, 0x5555
    sw      t1, 0(t0)
halt:
    j       halt

trap:                                   # t0 goes to mscratch, the rest it uses to `saved`
    csrw    mscratch, t0
    la      t0, saved
    sw      t1, 0(t0)
    sw      t2, 4(t0)
    sw      t3, 8(t0)
    sw      ra, 12(t0)
    csrr    t1, mcause
    slli    t1, t1, 1
    srli    t1, t1, 1
    li      t2, 7
    beq     t1, t2, on_mti
    li      t2, 11
    beq     t1, t2, on_mei
    li      t0, FINISHER                # nothing else is expected: fail, code = the cause
    slli    t1, t1, 16
    li      t2, 0x3333
    or      t1, t1, t2
    sw      t1, 0(t0)
1:  j       1b
on_mti:                                 # CLINT tick: count it, arm the next
    la      t0, ticks
    lw      t1, 0(t0)
    addi    t1, t1, 1
    sw      t1, 0(t0)
    call    arm_tick
    j       trap_return
on_mei:                                 # PLIC: claim; the RTC alarm: count, clear, re-arm
    li      t0, PLIC_CLAIM
    lw      t1, 0(t0)
    li      t2, RTC_IRQ
    bne     t1, t2, 1f
    la      t0, alarms
    lw      t2, 0(t0)
    addi    t2, t2, 1
    sw      t2, 0(t0)
    li      t0, RTC
    li      t2, 1
    sw      t2, RTC_CLEAR_INTERRUPT(t0)
    call    arm_alarm
1:  li      t0, PLIC_CLAIM
    li      t1, RTC_IRQ
    sw      t1, 0(t0)
trap_return:
    la      t0, saved
    lw      t1, 0(t0)
    lw      t2, 4(t0)
    lw      t3, 8(t0)
    lw      ra, 12(t0)
    csrr    t0, mscratch
    mret

arm_tick:                               # mtimecmp = mtime + TICK (clobbers t0-t3)
    li      t0, CLINT_MTIME
1:  lw      t2, 4(t0)
    lw      t1, 0(t0)
    lw      t3, 4(t0)
    bne     t2, t3, 1b
    addi    t3, t1, TICK
    sltu    t1, t3, t1
    add     t2, t2, t1
    li      t0, CLINT_MTIMECMP
    li      t1, -1
    sw      t1, 0(t0)                   # never early while the halves change
    sw      t2, 4(t0)
    sw      t3, 0(t0)
    ret

arm_alarm:                              # RTC alarm = now + RTC_DELTA ns (clobbers t0-t3)
    li      t0, RTC
    lw      t1, RTC_TIME_LOW(t0)
    lw      t2, RTC_TIME_HIGH(t0)
    li      t3, RTC_DELTA
    add     t3, t1, t3
    sltu    t1, t3, t1
    add     t2, t2, t1
    sw      t2, RTC_ALARM_HIGH(t0)
    sw      t3, RTC_ALARM_LOW(t0)       # the low word arms it
    ret

    .align 12                           # data on a page of its own: no writes to code pages
saved:
    .space  16
ticks:
    .word   0
alarms:
    .word   0
"""

# Host input for the device guest's UART, by REALTIME of arrival (a replay gets none: the
# log has what reached the guest).
DEV_STIMULUS = (
    Stimulus(100_000, UART0.name, b"replay bench input\n"),
    Stimulus(600_000, UART0.name, b"more input\n"),
)


@dataclass(frozen=True, slots=True)
class Guest:
    """A program to run to its end, and the host input it gets outside replay."""

    name: str
    size: int  # ITERS for cpu, LOOPS for dev (what rebuilds it in a worker)
    image: bytes
    stimulus: tuple[Stimulus, ...] = ()


def dev_source(loops: int, work: int = 100) -> str:
    """DEV_GUEST with its constants, from the device models' own register maps."""
    values = {
        "LOOPS": loops,
        "WORK": work,  # ~4 instructions each: a loop is ~420 instructions
        "DOT_EVERY": 16,
        "TICK": 50,  # CLINT ticks (100 ns): 5000 instructions at icount shift 0
        "RTC_DELTA": 20_000,  # HOST ns: 7k-60k instructions with the default host profile
        "FINISHER": FINISHER.base,
        "RTC": RTC.base,
        "RTC_IRQ": RTC.irq,
        "RTC_ENABLE_BIT": 1 << RTC.irq,
        "RTC_TIME_LOW": rtc.TIME_LOW,
        "RTC_TIME_HIGH": rtc.TIME_HIGH,
        "RTC_ALARM_LOW": rtc.ALARM_LOW,
        "RTC_ALARM_HIGH": rtc.ALARM_HIGH,
        "RTC_IRQ_ENABLED": rtc.IRQ_ENABLED,
        "RTC_CLEAR_INTERRUPT": rtc.CLEAR_INTERRUPT,
        "CLINT_MTIMECMP": CLINT.base + clint.MTIMECMP_LO,
        "CLINT_MTIME": CLINT.base + clint.MTIME_LO,
        "PLIC_RTC_PRIORITY": PLIC.base + 4 * RTC.irq,
        "PLIC_ENABLE": PLIC.base + plic.ENABLE_BASE,
        "PLIC_THRESHOLD": PLIC.base + plic.THRESHOLD,
        "PLIC_CLAIM": PLIC.base + plic.CLAIM_COMPLETE,
        "UART": UART0.base,
        "UART_LSR": uart.LSR,
        "LSR_DR": uart.LSR_DR,
        "MIE_BITS": (1 << 7) | (1 << 11),  # MTIE | MEIE
        "MSTATUS_MIE": 1 << 3,
    }
    equates = "\n".join(f"    .equ {name}, {value:#x}" for name, value in values.items())
    return equates + "\n" + DEV_GUEST


def make_guest(name: str, size: int) -> Guest:
    if name == "cpu":
        return Guest(name, size, build_prog(size).elf_bytes())
    if name == "dev":
        return Guest(name, size, assemble(dev_source(size)), DEV_STIMULUS)
    if name == "hello":
        return Guest(name, 0, assemble(HELLO_SOURCE.read_text()))
    raise ValueError(f"unknown guest {name!r}")


# --- one run of a guest in one mode (in a worker, or in this process for references) ---


@dataclass(slots=True)
class RunOutcome:
    """What a run did; `seconds` (wall) and `cpu_seconds` (this process's CPU time) include
    `decode_seconds` (replay: read_log)."""

    mode: str
    seconds: float
    cpu_seconds: float
    decode_seconds: float
    icount: int
    digest: str
    reasons: list[str]
    console: bytes
    slices: int  # host-model slices: the main loop's iterations over the vCPU
    log: bytes | None = None  # record: the finished log

    def to_json(self) -> dict[str, Any]:
        out = {
            "mode": self.mode,
            "seconds": self.seconds,
            "cpu_seconds": self.cpu_seconds,
            "decode_seconds": self.decode_seconds,
            "icount": self.icount,
            "digest": self.digest,
            "reasons": self.reasons,
            "console": self.console.hex(),
            "slices": self.slices,
        }
        if self.log is not None:
            out["log_sha256"] = hashlib.sha256(self.log).hexdigest()
            out["log_bytes"] = len(self.log)
        return out


def build_machine(guest: Guest, mode: ReplayMode, replay_log: Log | None = None) -> Machine:
    replaying = mode is ReplayMode.REPLAY
    machine = Machine(
        CONFIG,
        host_seed=REPLAY_SEED if replaying else RECORD_SEED,
        stimulus=() if replaying else guest.stimulus,
        mode=mode,
        replay_log=replay_log,
    )
    load_program(machine, guest.image)
    return machine


def run_to_end(machine: Machine, mode: ReplayMode) -> list[StopReason]:
    """Run until the guest stops; a replay goes on to LOG_END (the finisher stops it
    first, where the recording stopped)."""
    reasons = [machine.run(BUDGET).reason]
    if mode is ReplayMode.REPLAY:
        while reasons[-1] is not StopReason.LOG_END and len(reasons) < REPLAY_RUNS_MAX:
            reasons.append(machine.run(BUDGET).reason)
    return reasons


def run_guest(guest: Guest, mode: ReplayMode, log_data: bytes | None = None) -> RunOutcome:
    decode = decode_cpu = 0.0
    replay_log = None
    if mode is ReplayMode.REPLAY:
        start, start_cpu = time.perf_counter(), time.process_time()
        replay_log = read_log(log_data or b"", allow_truncated=False)
        decode = time.perf_counter() - start
        decode_cpu = time.process_time() - start_cpu
    machine = build_machine(guest, mode, replay_log)
    start, start_cpu = time.perf_counter(), time.process_time()
    reasons = run_to_end(machine, mode)
    log = machine.recorded_log() if mode is ReplayMode.RECORD else None
    seconds = time.perf_counter() - start + decode
    cpu_seconds = time.process_time() - start_cpu + decode_cpu
    return RunOutcome(
        mode=mode.value,
        seconds=seconds,
        cpu_seconds=cpu_seconds,
        decode_seconds=decode,
        icount=machine.cpu.icount,
        digest=digest(machine).hex(),
        reasons=[r.value for r in reasons],
        console=machine.console_output(),
        slices=machine._slices,  # private, but the only count of the main loop's slices
        log=log,
    )


def worker(mode: str, guest_name: str, size: int, log_path: str | None) -> int:
    log_data = Path(log_path).read_bytes() if log_path else None
    try:
        out = run_guest(make_guest(guest_name, size), ReplayMode(mode), log_data).to_json()
    except Exception as exc:  # reported to the parent, which keeps going
        out = {"error": f"{type(exc).__name__}: {exc}"}
    print(json.dumps(out))
    return 0


# --- checks against the reference recording ---


def check_run(out: dict[str, Any], ref: RunOutcome) -> list[str]:
    """Why a run's result differs from the reference recording's (nothing if it does not)."""
    if "error" in out:
        return [out["error"]]
    problems = []
    if out["icount"] != ref.icount:
        problems.append(f"final icount {out['icount']:,} != recorded {ref.icount:,}")
    if out["digest"] != ref.digest:
        problems.append(f"final digest {out['digest'][:16]}... != recorded {ref.digest[:16]}...")
    if bytes.fromhex(out["console"]) != ref.console:
        problems.append("console output differs from the recording's")
    if out["mode"] == ReplayMode.REPLAY.value:
        if out["reasons"][-1] != StopReason.LOG_END.value:
            problems.append(f"replay stopped with {out['reasons']}, never at LOG_END")
    elif out["reasons"] != ref.reasons:
        problems.append(f"stopped with {out['reasons']}, the recording with {ref.reasons}")
    ref_sha = hashlib.sha256(ref.log or b"").hexdigest()
    if out["mode"] == ReplayMode.RECORD.value and out["log_sha256"] != ref_sha:
        problems.append("recorded a different log than the reference recording (same seed)")
    return problems


def verified_reference(guest: Guest) -> tuple[RunOutcome, list[str]]:
    """Record `guest` in this process, replay it here once, and say what did not match."""
    ref = run_guest(guest, ReplayMode.RECORD)
    problems = []
    if ref.reasons != [StopReason.FINISHER_PASS.value]:
        problems.append(f"{guest.name}: the recording stopped with {ref.reasons}, not a pass")
    try:
        replay = run_guest(guest, ReplayMode.REPLAY, ref.log).to_json()
    except ReplayError as exc:  # a broken replay is a finding, not a crash of the bench
        replay = {"error": exc.render()}
    problems += [f"{guest.name} replay: {p}" for p in check_run(replay, ref)]
    return ref, problems


# --- 1. overhead ---

Say = Callable[[str], None]


@dataclass(slots=True)
class ModeTimes:
    rounds: list[int] = field(default_factory=list)  # the round of each good run
    seconds: list[float] = field(default_factory=list)
    cpu: list[float] = field(default_factory=list)  # process CPU time of the same runs
    decode: list[float] = field(default_factory=list)
    slices: list[int] = field(default_factory=list)


def spawn(mode: ReplayMode, guest: Guest, log_path: Path, timeout: float) -> dict[str, Any]:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", mode.value]
    cmd += ["--guest", guest.name, "--size", str(guest.size)]
    if mode is ReplayMode.REPLAY:
        cmd += ["--log", str(log_path)]
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


def measure_overhead(
    guests: Sequence[Guest],
    refs: dict[str, RunOutcome],
    rounds: int,
    timeout: float,
    say: Say,
    problems: list[str],
) -> dict[str, dict[str, ModeTimes]]:
    times = {g.name: {m.value: ModeTimes() for m in MODES} for g in guests}
    with tempfile.TemporaryDirectory(prefix="replay_bench.") as tmp:
        log_paths = {g.name: Path(tmp) / f"{g.name}.log" for g in guests}
        for g in guests:
            log_paths[g.name].write_bytes(refs[g.name].log or b"")
        for rnd in range(rounds):
            # Rotate the mode order each round: no mode always runs first, or after the same one.
            order = MODES[rnd % 3 :] + MODES[: rnd % 3]
            for guest in guests:
                for mode in order:
                    out = spawn(mode, guest, log_paths[guest.name], timeout)
                    bad = check_run(out, refs[guest.name])
                    where = f"round {rnd + 1} {guest.name} {mode.value}"
                    if bad:
                        problems.append(f"{where}: " + "; ".join(bad))
                        say(f"  {where:<22} BAD: {'; '.join(bad)}")
                        continue
                    t = times[guest.name][mode.value]
                    t.rounds.append(rnd)
                    t.seconds.append(out["seconds"])
                    t.cpu.append(out["cpu_seconds"])
                    t.decode.append(out["decode_seconds"])
                    t.slices.append(out["slices"])
                    mips = out["icount"] / out["seconds"] / 1e6
                    say(f"  {where:<22} {out['seconds']:8.3f} s {mips:7.2f} MIPS")
    return times


def overhead_summary(times: dict[str, ModeTimes], icount: int) -> dict[str, Any]:
    """Medians per mode, ratios of medians, and the spread of per-round ratios."""
    summary: dict[str, Any] = {"instructions": icount, "modes": {}, "ratios": {}}
    for mode, t in times.items():
        if t.seconds:
            summary["modes"][mode] = {
                "median_s": statistics.median(t.seconds),
                "min_s": min(t.seconds),
                "max_s": max(t.seconds),
                "decode_median_s": statistics.median(t.decode),
                "slices_median": statistics.median(t.slices),
                "cpu_median_s": statistics.median(t.cpu),
                "all_s": t.seconds,
                "cpu_all_s": t.cpu,
            }
    none = times[ReplayMode.NONE.value]
    for mode in (ReplayMode.RECORD.value, ReplayMode.REPLAY.value):
        other = times[mode]
        # Per round: the runs of one round ran within seconds of each other.
        by_round = dict(zip(none.rounds, none.seconds, strict=True))
        paired = [
            s / by_round[r]
            for r, s in zip(other.rounds, other.seconds, strict=True)
            if r in by_round
        ]
        if paired:
            summary["ratios"][f"{mode}/none"] = {
                "of_medians": statistics.median(other.seconds) / statistics.median(none.seconds),
                "cpu_of_medians": statistics.median(other.cpu) / statistics.median(none.cpu),
                "per_round_min": min(paired),
                "per_round_max": max(paired),
            }
    return summary


def print_overhead(summaries: dict[str, dict[str, Any]], rounds: int, say: Say) -> None:
    say(f"\n1. overhead: wall time of the run, median (min-max) of {rounds} interleaved rounds")
    say(
        f"{'guest':<6} {'instructions':>12}  {'none s':>20} {'record s':>20} {'replay s':>20}"
        f"  {'record/none':>18} {'replay/none':>18}"
    )
    misses = []
    for name, s in summaries.items():
        cells = []
        for mode in MODES:
            m = s["modes"].get(mode.value)
            cells.append(f"{m['median_s']:.3f} ({m['min_s']:.3f}-{m['max_s']:.3f})" if m else "—")
        ratio_cells = []
        for key in ("record/none", "replay/none"):
            r = s["ratios"].get(key)
            if r is None:
                ratio_cells.append("—")
                continue
            ratio_cells.append(
                f"{r['of_medians']:.3f}x ({r['per_round_min']:.2f}-{r['per_round_max']:.2f})"
            )
            if r["of_medians"] > GOAL:
                misses.append(f"{name} {key} {r['of_medians']:.3f}x")
        say(
            f"{name:<6} {s['instructions']:>12,}  {cells[0]:>20} {cells[1]:>20} {cells[2]:>20}"
            f"  {ratio_cells[0]:>18} {ratio_cells[1]:>18}"
        )
    say("ratios: of the medians (range of the per-round ratios); replay includes read_log")
    for name, s in summaries.items():
        slices = "/".join(
            f"{s['modes'][m.value]['slices_median']:,.0f}" if m.value in s["modes"] else "—"
            for m in MODES
        )
        decode = s["modes"].get(ReplayMode.REPLAY.value, {}).get("decode_median_s")
        shown = f"{decode * 1e3:.1f} ms" if decode is not None else "—"
        cpu = " ".join(f"{key} {r['cpu_of_medians']:.3f}x" for key, r in s["ratios"].items())
        say(
            f"  {name}: process CPU time {cpu}; main-loop slices none/record/replay {slices}; "
            f"replay's read_log {shown}"
        )
    verdict = "met" if not misses else "NOT met: " + ", ".join(misses)
    say(f"goal record/none and replay/none <= {GOAL}x: {verdict}")


# --- 2. log size ---


def log_summary(ref: RunOutcome) -> dict[str, Any]:
    stats: LogStats = log_stats(read_log(ref.log or b""))
    per_m = stats.instructions / 1e6
    return {
        "instructions": stats.instructions,
        "events": stats.events,
        "header_bytes": stats.header_bytes,
        "event_bytes": stats.event_bytes,
        "bytes_per_event": stats.bytes_per_event,
        "events_per_m_insns": stats.events / per_m if per_m else 0.0,
        "bytes_per_m_insns": stats.event_bytes / per_m if per_m else 0.0,
        "per_kind": {k.name: stats.per_kind[k] for k in EventKind},
        "bytes_per_kind": {k.name: stats.bytes_per_kind[k] for k in EventKind},
    }


def print_log_sizes(sizes: dict[str, dict[str, Any]], say: Say) -> None:
    say(
        "\n2. log size (the reference recording of each guest; header not in the per-event figures)"
    )
    say(
        f"{'guest':<6} {'instructions':>12} {'events':>8} {'bytes':>8} {'B/event':>8}"
        f" {'events/M insns':>15} {'bytes/M insns':>14} {'header B':>9}"
    )
    for name, s in sizes.items():
        say(
            f"{name:<6} {s['instructions']:>12,} {s['events']:>8,} {s['event_bytes']:>8,}"
            f" {s['bytes_per_event']:>8.2f} {s['events_per_m_insns']:>15,.1f}"
            f" {s['bytes_per_m_insns']:>14,.1f} {s['header_bytes']:>9}"
        )
    say("per kind: events, bytes (bytes/event)")
    say(f"{'kind':<12}" + "".join(f" {name:>24}" for name in sizes))
    for kind in EventKind:
        if not any(s["per_kind"][kind.name] for s in sizes.values()):
            continue
        cells = []
        for s in sizes.values():
            n, b = s["per_kind"][kind.name], s["bytes_per_kind"][kind.name]
            cells.append(f"{n:,}, {b:,} ({b / n:.2f})" if n else "0")
        say(f"{kind.name:<12}" + "".join(f" {c:>24}" for c in cells))


# --- 3. seek ---


@dataclass(slots=True)
class SeekRun:
    """One snapshot interval: the run to the end, then the timed seeks."""

    label: str
    k: int | None  # None: only the snapshot at the start
    run_s: float
    snapshots: int
    snapshot_bytes: int
    seek_s: list[float]
    replayed: list[int]
    targets: list[int]

    def summary(self, end: int) -> dict[str, Any]:
        if not self.seek_s:
            return {"label": self.label, "k": self.k, "run_to_end_s": self.run_s, "seeks": 0}
        early = [s for s, t in zip(self.seek_s, self.targets, strict=True) if t < end // 2]
        late = [s for s, t in zip(self.seek_s, self.targets, strict=True) if t >= end // 2]
        return {
            "label": self.label,
            "k": self.k,
            "run_to_end_s": self.run_s,
            "snapshots": self.snapshots,
            "snapshot_bytes": self.snapshot_bytes,
            "seeks": len(self.seek_s),
            "seek_median_s": statistics.median(self.seek_s),
            "seek_max_s": max(self.seek_s),
            "seek_median_first_half_s": statistics.median(early) if early else None,
            "seek_median_second_half_s": statistics.median(late) if late else None,
            "replayed_mean": statistics.fmean(self.replayed),
            "replayed_max": max(self.replayed),
            "seek_all_s": self.seek_s,
        }


def seek_targets(end: int, count: int, seed: int) -> list[int]:
    """A fixed pseudo-random walk over the whole run: each target anywhere in 1..end."""
    rng = random.Random(seed)
    return [rng.randint(1, end) for _ in range(count)]


def record_cpu_run(iters: int, insns: int) -> tuple[bytes, int]:
    """Record the CPU guest for `insns` instructions (or to its end); the log and its end."""
    machine = build_machine(make_guest("cpu", iters), ReplayMode.RECORD)
    machine.run(insns)
    return machine.recorded_log(), machine.cpu.icount


def replaying_session(iters: int, log: bytes, k: int | None) -> Session:
    machine = build_machine(make_guest("cpu", iters), ReplayMode.REPLAY, read_log(log))
    return Session(machine, snapshot_every=k)


def reference_digests(
    iters: int, log: bytes, targets: Sequence[int], end: int
) -> tuple[dict[int, bytes], float]:
    """Digests of a straight replay (no snapshots) stopped at each target in order, and
    the time of that replay to the end (the digests not counted)."""
    session = replaying_session(iters, log, None)
    digests: dict[int, bytes] = {}
    seconds = 0.0
    for target in [*sorted(set(targets)), end]:
        start = time.perf_counter()
        session.run_to(target)
        seconds += time.perf_counter() - start
        if session.machine.cpu.icount != target:
            raise RuntimeError(f"straight replay stopped at {session.machine.cpu.icount:,}")
        digests[target] = digest(session.machine)
    return digests, seconds


def timed_seek(session: Session, target: int, expected: bytes) -> tuple[float, int] | str:
    """Seek to `target`: (seconds, instructions replayed), or what went wrong."""
    start = time.perf_counter()
    try:
        result = session.seek(target)
    except (ReplayError, SeekError) as exc:
        return str(exc)
    seconds = time.perf_counter() - start
    icount = session.machine.cpu.icount
    if icount != target:
        return f"stopped at {icount:,} ({result.reason.value})"
    if digest(session.machine) != expected:
        return "the digest differs from the straight replay's"
    return seconds, result.executed


def seek_run(
    iters: int,
    log: bytes,
    k: int | None,
    end: int,
    targets: Sequence[int],
    digests: dict[int, bytes],
    problems: list[str],
) -> SeekRun:
    # "start only": an interval past the end leaves just the snapshot at icount 0.
    session = replaying_session(iters, log, k if k is not None else end + 1)
    label = f"{k:,}" if k is not None else "start only"
    start = time.perf_counter()
    reached = session.run_to(end)
    run_s = time.perf_counter() - start
    if session.machine.cpu.icount != end or reached.reason is not StopReason.LOG_END:
        problems.append(f"seek K={label}: run_to({end:,}) stopped {reached} at a wrong place")
    seek_s, replayed, done = [], [], []
    for target in targets:
        outcome = timed_seek(session, target, digests[target])
        if isinstance(outcome, str):
            # The machine's state is unknown from here: the rest of this interval is void.
            problems.append(f"seek K={label} to {target:,}: {outcome}; the later seeks skipped")
            break
        seek_s.append(outcome[0])
        replayed.append(outcome[1])
        done.append(target)
    sizes = [len(data) for data in session.snapshots.values()]
    return SeekRun(label, k, run_s, len(sizes), sum(sizes), seek_s, replayed, done)


def measure_seek(args: argparse.Namespace, say: Say, problems: list[str]) -> dict[str, Any]:
    log, end = record_cpu_run(args.iters, args.seek_insns)
    targets = seek_targets(end, args.seeks, args.seed)
    digests, straight_s = reference_digests(args.iters, log, targets, end)
    runs = []
    for k in [*args.k_values, None]:
        runs.append(seek_run(args.iters, log, k, end, targets, digests, problems))
        say(f"  seek K={runs[-1].label}: done")
    previous = [end, *targets[:-1]]
    back = sum(t < p for t, p in zip(targets, previous, strict=True))
    return {
        "instructions": end,
        "seeks": len(targets),
        "backward": back,
        "forward": len(targets) - back,
        "seed": args.seed,
        "straight_replay_s": straight_s,
        "intervals": [r.summary(end) for r in runs],
    }


def print_seek(s: dict[str, Any], say: Say) -> None:
    say(
        f"\n3. seek: cpu guest, {s['instructions']:,} instructions recorded; {s['seeks']} seeks"
        f" (seed {s['seed']}: {s['backward']} back, {s['forward']} forward) over the whole run"
    )
    say(f"straight replay to the end, no snapshots: {s['straight_replay_s']:.3f} s")
    say(
        f"{'K':>11} {'snaps':>5} {'MiB':>6} {'run_to end s':>12}  {'seek median':>11}"
        f" {'max':>9}  {'median 1st/2nd half':>19}  {'insns replayed mean':>19} {'max':>9}"
    )
    for r in s["intervals"]:
        if not r["seeks"]:
            say(f"{r['label']:>11}  no good seek (see BAD below)")
            continue
        halves = "/".join(
            f"{v * 1e3:.1f}" if v is not None else "—"
            for v in (r["seek_median_first_half_s"], r["seek_median_second_half_s"])
        )
        say(
            f"{r['label']:>11} {r['snapshots']:>5} {r['snapshot_bytes'] / (1 << 20):>6.2f}"
            f" {r['run_to_end_s']:>12.3f}  {r['seek_median_s'] * 1e3:>8.1f} ms"
            f" {r['seek_max_s'] * 1e3:>6.1f} ms  {halves + ' ms':>19}"
            f"  {r['replayed_mean']:>19,.0f} {r['replayed_max']:>9,}"
        )


# --- the whole benchmark ---


def host_info() -> dict[str, Any]:
    model = platform.processor() or "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "cpu": model,
        "cpus": os.cpu_count(),
        "python": sys.version.split()[0],
        "loadavg": os.getloadavg(),
    }


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller sizes: about 30 s")
    parser.add_argument("--rounds", type=int, help=f"overhead rounds ({DEFAULTS[0]})")
    parser.add_argument("--iters", type=int, help=f"ITERS of the cpu guest ({DEFAULTS[1]})")
    parser.add_argument("--dev-loops", type=int, help=f"loops of the dev guest ({DEFAULTS[2]})")
    parser.add_argument("--seek-insns", type=int, help=f"recorded for seek ({DEFAULTS[3]:,})")
    parser.add_argument("--ks", help=f"snapshot intervals to seek with ({DEFAULTS[4]})")
    parser.add_argument("--seeks", type=int, help=f"seeks per interval ({DEFAULTS[5]})")
    parser.add_argument("--seed", type=int, default=1, help="seed of the seek targets (1)")
    parser.add_argument("--only", default="overhead,log,seek", help="sections to run")
    parser.add_argument("--timeout", type=float, default=600.0, help="per worker run, seconds")
    parser.add_argument(
        "--json",
        nargs="?",
        const="-",
        metavar="PATH",
        help="also write the figures as one JSON object to PATH (stdout if no PATH; the "
        "table then goes to stderr)",
    )
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--guest", help=argparse.SUPPRESS)
    parser.add_argument("--size", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--log", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    preset = QUICK if args.quick else DEFAULTS
    names = ("rounds", "iters", "dev_loops", "seek_insns", "ks", "seeks")
    for name, value in zip(names, preset, strict=True):
        if getattr(args, name) is None:
            setattr(args, name, value)
    args.k_values = [int(k) for k in args.ks.split(",") if k.strip()]
    args.sections = {s.strip() for s in args.only.split(",") if s.strip()}
    unknown = args.sections - {"overhead", "log", "seek"}
    if unknown:
        parser.error(f"unknown section(s) {sorted(unknown)}")
    if args.rounds < 1 or args.seeks < 1 or any(k <= 0 for k in args.k_values):
        parser.error("--rounds, --seeks and every K must be positive")
    return args


def run_sections(args: argparse.Namespace, say: Say, problems: list[str]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    if args.sections & {"overhead", "log"}:
        guests = [make_guest("cpu", args.iters), make_guest("dev", args.dev_loops)]
        if "log" in args.sections:
            guests.append(make_guest("hello", 0))
        refs = {}
        for guest in guests:
            refs[guest.name], bad = verified_reference(guest)
            problems.extend(bad)
        if "overhead" in args.sections:
            timed = [g for g in guests if g.name != "hello"]  # too short to time
            say(f"overhead: {args.rounds} rounds of {', '.join(g.name for g in timed)}")
            times = measure_overhead(timed, refs, args.rounds, args.timeout, say, problems)
            result["overhead"] = {
                name: overhead_summary(t, refs[name].icount) for name, t in times.items()
            }
        if "log" in args.sections:
            result["log"] = {name: log_summary(ref) for name, ref in refs.items()}
    if "seek" in args.sections:
        say("seek: recording, straight replay, then each interval")
        result["seek"] = measure_seek(args, say, problems)
    return result


def print_report(result: dict[str, Any], args: argparse.Namespace, say: Say) -> None:
    host = result["host"]
    say(
        f"\n{host['cpu']}, {host['cpus']} CPUs, Python {host['python']}, loadavg "
        f"{host['loadavg'][0]:.2f} (1-min) at the end; host seed {RECORD_SEED} for none and "
        f"record, {REPLAY_SEED} for replay"
    )
    if "overhead" in result:
        print_overhead(result["overhead"], args.rounds, say)
    if "log" in result:
        print_log_sizes(result["log"], say)
    if "seek" in result:
        print_seek(result["seek"], say)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.worker:
        return worker(args.worker, args.guest, args.size, args.log)
    json_stdout = args.json == "-"
    stream = sys.stderr if json_stdout else sys.stdout

    def say(text: str) -> None:
        print(text, file=stream, flush=True)

    problems: list[str] = []
    result = run_sections(args, say, problems)
    result["host"] = host_info()
    result["settings"] = {
        "quick": args.quick,
        "rounds": args.rounds,
        "iters": args.iters,
        "dev_loops": args.dev_loops,
        "seek_insns": args.seek_insns,
        "ks": args.k_values,
        "seeks": args.seeks,
        "record_seed": RECORD_SEED,
        "replay_seed": REPLAY_SEED,
    }
    result["problems"] = problems
    print_report(result, args, say)
    for problem in problems:
        say(f"BAD: {problem}")
    if args.json:
        text = json.dumps(result, indent=2)
        if json_stdout:
            print(text)
        else:
            Path(args.json).write_text(text + "\n")
            say(f"JSON written to {args.json}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
