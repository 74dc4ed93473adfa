"""Clocks, timers, bottom halves and the main loop's use of them."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from vm import Machine, MachineConfig, StopReason
from vm.asm import assemble
from vm.bh import BottomHalves
from vm.clock import CheckpointKind, ClockKind, HostTime, TimerList, VirtualClock
from vm.hostmodel import HostModel
from vm.memory import RAM_BASE

# -- timers --------------------------------------------------------------------------------


def test_a_timer_is_armed_modified_cancelled_and_queried():
    timers = TimerList(ClockKind.VIRTUAL)
    timer = timers.new(lambda: None)
    assert not timer.pending and not timer.expired(10**9)
    timer.mod(500)
    assert timer.pending and not timer.expired(499) and timer.expired(500)
    timer.mod(100)
    assert timers.next_deadline_ns() == 100
    timer.cancel()
    assert not timer.pending and timers.next_deadline_ns() is None


def test_expired_timers_fire_earliest_first_with_ties_in_creation_order():
    fired = []
    timers = TimerList(ClockKind.VIRTUAL)
    for name, deadline in (("a", 30), ("b", 10), ("c", 30), ("d", 40)):
        timers.new(lambda name=name: fired.append(name)).mod(deadline)
    assert timers.run_expired(35)
    assert fired == ["b", "a", "c"]
    assert timers.next_deadline_ns() == 40


def test_a_callback_may_rearm_its_own_timer():
    fired = []
    timers = TimerList(ClockKind.VIRTUAL)

    def tick():
        fired.append(len(fired))
        if len(fired) < 3:
            timer.mod(timer_deadline())

    timer = timers.new(tick)
    timer_deadline = lambda: 10 * (len(fired) + 1)  # noqa: E731 - tiny local helper
    timer.mod(10)
    timers.run_expired(100)
    assert fired == [0, 1, 2]  # re-armed in the past relative to now: fired in the same run


def test_a_cancelled_timer_does_not_fire():
    fired = []
    timers = TimerList(ClockKind.HOST)
    timer = timers.new(lambda: fired.append(1))
    timer.mod(5)
    timer.cancel()
    assert not timers.run_expired(100) and fired == []


def test_external_timers_are_kept_apart_and_only_virtual():
    timers = TimerList(ClockKind.VIRTUAL)
    timers.new(lambda: None, external=True).mod(5)
    assert timers.next_deadline_ns() is None
    assert timers.next_deadline_ns(external=True) == 5
    with pytest.raises(ValueError):
        TimerList(ClockKind.HOST).new(lambda: None, external=True)


@given(st.integers(0, 10), st.integers(0, 10**6), st.integers(0, 10**12), st.integers(0, 10**9))
def test_icount_at_is_the_first_boundary_at_or_past_the_deadline(shift, icount, deadline, bias):
    clock = VirtualClock(shift)
    clock.bias_ns = bias
    at = clock.icount_at(deadline, icount)
    assert at >= icount
    assert clock.now_ns(at) >= deadline or at == icount
    if at > icount:
        assert clock.now_ns(at - 1) < deadline


def test_warping_moves_the_virtual_clock_but_not_icount():
    clock = VirtualClock(3)
    clock.warp_to(1000, 10)
    assert clock.now_ns(10) == 1000
    clock.warp_to(5, 10)  # never backwards
    assert clock.now_ns(10) == 1000


@given(st.integers(0, (1 << 64) - 1), st.integers(0, 10**15))
def test_realtime_for_host_inverts_the_host_clock(seed, elapsed):
    time = HostTime(HostModel(seed))
    target = time.base_ns + elapsed
    realtime = time.realtime_for_host(target)
    time.realtime_ns = realtime
    assert time.host_ns() >= target
    if realtime:
        time.realtime_ns = realtime - 1
        assert time.host_ns() < target


# -- bottom halves ---------------------------------------------------------------------------


def test_bottom_halves_run_in_scheduling_order_and_only_once_per_schedule():
    ran = []
    bhs = BottomHalves(lambda: 7)
    first = bhs.new(lambda: ran.append("first"), replay=False)
    second = bhs.new(lambda: ran.append("second"), replay=False)
    second.schedule()
    first.schedule()
    first.schedule()
    assert bhs.run_plain()
    assert ran == ["second", "first"]
    assert not bhs.run_plain()


def test_a_bottom_half_scheduled_while_running_waits_for_the_next_round():
    ran = []
    bhs = BottomHalves(lambda: 0)
    again = bhs.new(lambda: ran.append("again"), replay=True)
    bhs.schedule_oneshot(lambda: (ran.append("oneshot"), again.schedule()), replay=True)
    bhs.run_replay()
    assert ran == ["oneshot"]
    bhs.run_replay()
    assert ran == ["oneshot", "again"]


def test_a_replay_bottom_half_records_the_icount_it_was_scheduled_at():
    bhs = BottomHalves(lambda: 1234)
    bh = bhs.new(lambda: None, replay=True)
    bh.schedule()
    assert bh.scheduled_icount == 1234
    bh.cancel()
    assert not bhs.replay_queue


# -- the main loop ---------------------------------------------------------------------------

SPIN = "1: addi a0, a0, 1\n j 1b\n"


def spinning_machine(*, shift=0, host_seed=0) -> Machine:
    m = Machine(MachineConfig(icount_shift=shift), host_seed=host_seed)
    m.bus.write_bytes(RAM_BASE, assemble(SPIN))
    m.cpu.pc = RAM_BASE
    return m


@pytest.mark.parametrize("shift", [0, 3, 7])
@pytest.mark.parametrize("deadline_ns", [1, 100, 12_345])
def test_a_virtual_timer_fires_at_the_first_boundary_past_its_deadline(shift, deadline_ns):
    for seed in (0, 1, 2):
        m = spinning_machine(shift=shift, host_seed=seed)
        seen = []
        m.new_timer(ClockKind.VIRTUAL, lambda m=m, seen=seen: seen.append(m.cpu.icount)).mod(
            deadline_ns
        )
        m.run(20_000)
        assert seen == [-(-deadline_ns >> shift)]


def test_a_timer_armed_in_the_past_fires_at_the_next_boundary_whatever_the_host():
    fired_at = set()
    for seed in range(5):
        m = spinning_machine(host_seed=seed)
        m.run(1000)
        seen = []
        m.new_timer(ClockKind.VIRTUAL, lambda m=m, seen=seen: seen.append(m.cpu.icount)).mod(3)
        m.run(1000)
        fired_at.add(tuple(seen))
    assert fired_at == {(1000,)}


def test_host_timers_run_only_behind_their_checkpoint():
    m = spinning_machine()
    fired = []
    m.new_timer(ClockKind.HOST, lambda: fired.append(1)).mod(m.host_time.host_ns())
    refused = []

    def refuse(kind):
        refused.append(kind)
        return kind is not CheckpointKind.CLOCK_HOST

    m.checkpoint = refuse
    m.run(5000)
    assert fired == [] and CheckpointKind.CLOCK_HOST in refused
    del m.checkpoint
    m.run(10)
    assert fired == [1]


def test_plain_bottom_halves_run_at_host_chosen_points_and_replay_ones_at_the_next_boundary():
    plain_at, replay_at = set(), set()
    for seed in range(8):
        m = spinning_machine(host_seed=seed)
        seen = {}
        m.bottom_halves.schedule_oneshot(
            lambda m=m, seen=seen: seen.setdefault("plain", m.cpu.icount), replay=False
        )
        m.bottom_halves.schedule_oneshot(
            lambda m=m, seen=seen: seen.setdefault("replay", m.cpu.icount), replay=True
        )
        m.run(200_000)
        plain_at.add(seen["plain"])
        replay_at.add(seen["replay"])
    assert replay_at == {0}  # the first boundary, before the first instruction
    assert len(plain_at) > 1  # the host decides: a device must not let this reach the guest


WFI_TIMER = """
    li   t0, 0x0200bff8      # mtime
    lw   t1, 0(t0)
    addi t1, t1, 50          # 50 ticks = 5000 ns from now
    li   t2, 0x02004000      # mtimecmp
    sw   zero, 4(t2)
    sw   t1, 0(t2)
    li   t3, 0x80            # MTIE, interrupts stay globally off: WFI just wakes up
    csrw mie, t3
    wfi
    li   t0, 0x0200bff8
    lw   a0, 0(t0)           # mtime after the wake-up
    csrw mie, zero           # MTIP stays pending; stop listening to it
    wfi                      # nothing left to wait for
"""


def test_wfi_warps_virtual_time_to_the_timer_and_then_idles_forever():
    results = set()
    for seed in range(4):
        m = Machine(host_seed=seed)
        m.bus.write_bytes(RAM_BASE, assemble(WFI_TIMER))
        m.cpu.pc = RAM_BASE
        result = m.run(10_000)
        results.add((result.reason, result.executed, m.cpu.x[10], m.vclock.bias_ns))
    assert len(results) == 1
    reason, executed, mtime, bias = results.pop()
    assert reason is StopReason.WFI_IDLE
    assert bias > 0 and mtime >= 50
    assert executed < 30  # the sleep cost no instructions


def test_a_timer_that_keeps_waking_a_sleeping_hart_without_an_interrupt_ends_as_idle():
    m = Machine()
    m.bus.write_bytes(RAM_BASE, assemble("wfi\n"))
    m.cpu.pc = RAM_BASE
    timer = m.new_timer(ClockKind.VIRTUAL, lambda: timer.mod(m.virtual_ns() + 1000))
    timer.mod(1000)
    assert m.run(100).reason is StopReason.WFI_IDLE


def test_a_timer_forever_due_stops_the_run_instead_of_hanging():
    m = spinning_machine()
    timer = m.new_timer(ClockKind.VIRTUAL, lambda: timer.mod(0))  # always in the past
    timer.mod(0)
    assert m.run(1000).reason is StopReason.NO_PROGRESS


def test_a_clint_compare_value_too_far_to_reach_never_fires_and_idles():
    m = Machine()
    m.bus.write_bytes(
        RAM_BASE,
        assemble("""
        li   t0, 0x02004000
        li   t1, -1
        sw   t1, 0(t0)
        sw   t1, 4(t0)        # mtimecmp = 2**64 - 1: QEMU clamps the deadline to INT64_MAX
        li   t1, 0x80
        csrw mie, t1
        wfi
    """),
    )
    m.cpu.pc = RAM_BASE
    assert m.run(1000).reason is StopReason.WFI_IDLE
    assert m.devices["clint"].timer.deadline_ns == (1 << 63) - 1


@pytest.mark.parametrize("high", [0x8000_0000, 0x4000_5229, 0x028F_5C29])
def test_a_clint_compare_value_whose_nanoseconds_wrap_is_never_as_in_qemu(high):
    # (mtimecmp - mtime) * 100 wraps 64 bits: QEMU's ns_diff < diff check makes it INT64_MAX.
    m = Machine()
    m.bus.write(0x0200_4004, 4, high)
    assert m.devices["clint"].timer.deadline_ns == (1 << 63) - 1
