"""The goldfish RTC: registers, the HOST clock through the choke point, the alarm."""

from __future__ import annotations

import pytest

from vm import Machine, MachineConfig
from vm.clock import CheckpointKind
from vm.devices.rtc import (
    ALARM_HIGH,
    ALARM_LOW,
    ALARM_STATUS,
    CLEAR_ALARM,
    CLEAR_INTERRUPT,
    IRQ_ENABLED,
    TIME_HIGH,
    TIME_LOW,
)
from vm.memory import RAM_BASE
from vm.nondet import NondetKind

RTC_BASE = 0x0010_1000


def machine(seed: int = 0) -> Machine:
    m = Machine(MachineConfig(), host_seed=seed)  # the RTC is one of virt's default devices
    m.bus.write_bytes(RAM_BASE, (0x0000_006F).to_bytes(4, "little"))  # j . (spin)
    m.cpu.pc = RAM_BASE
    return m


def read(m: Machine, offset: int) -> int:
    return m.bus.read(RTC_BASE + offset, 4)


def write(m: Machine, offset: int, value: int) -> None:
    m.bus.write(RTC_BASE + offset, 4, value)


def count(m: Machine) -> int:
    low = read(m, TIME_LOW)
    return (read(m, TIME_HIGH) << 32) | low


def test_the_time_is_the_host_clock_and_reading_it_goes_through_the_choke_point():
    m = machine()
    before = m.nondet.counts[NondetKind.CLOCK_HOST]
    assert count(m) == m.host_time.host_ns()
    assert m.nondet.counts[NondetKind.CLOCK_HOST] == before + 1


def test_different_hosts_read_different_times():
    assert count(machine(1)) != count(machine(2))


def test_reading_time_low_latches_time_high():
    m = machine()
    low = read(m, TIME_LOW)
    latched = read(m, TIME_HIGH)
    m.host_time.advance(1 << 40)
    assert read(m, TIME_HIGH) == latched  # unchanged until TIME_LOW is read again
    assert (latched << 32 | low) < count(m)


def test_a_replayed_clock_value_reaches_the_guest_instead_of_the_host():
    m = machine()

    class Replay:
        def value(self, kind, channel, produce):
            assert kind is NondetKind.CLOCK_HOST
            return 0x1234_5678_9ABC

    m.nondet.port = Replay()
    assert count(m) == 0x1234_5678_9ABC


def test_setting_the_time_moves_the_offset():
    m = machine()
    write(m, TIME_HIGH, 5)
    write(m, TIME_LOW, 7)
    assert 5 << 32 | 7 <= count(m) < (5 << 32 | 7) + 10**6


def test_an_alarm_in_the_past_raises_the_interrupt_at_once():
    m = machine()
    write(m, IRQ_ENABLED, 1)
    write(m, ALARM_HIGH, 0)
    write(m, ALARM_LOW, 1)
    rtc = m.devices["rtc"]
    assert rtc.irq_pending and rtc.irq.level and not read(m, ALARM_STATUS)
    write(m, CLEAR_INTERRUPT, 1)
    assert not rtc.irq.level


def test_an_alarm_fires_on_the_host_clock_behind_its_checkpoint():
    m = machine()
    rtc = m.devices["rtc"]
    target = count(m) + 5_000_000  # 5 ms of host time ahead
    write(m, ALARM_HIGH, target >> 32)
    write(m, ALARM_LOW, target & 0xFFFF_FFFF)
    assert read(m, ALARM_STATUS) == 1 and read(m, ALARM_LOW) == target & 0xFFFF_FFFF
    checkpoints = []
    m.checkpoint = lambda kind: checkpoints.append(kind) or True
    while rtc.alarm_running:
        m.run(10_000)
    assert CheckpointKind.CLOCK_HOST in checkpoints
    assert rtc.irq_pending and not rtc.irq.level  # interrupts not enabled
    assert m.host_time.host_ns() >= target - rtc.tick_offset
    write(m, IRQ_ENABLED, 1)
    assert rtc.irq.level and read(m, IRQ_ENABLED) == 1


def test_clearing_the_alarm_cancels_it():
    m = machine()
    write(m, ALARM_HIGH, (count(m) + 10**6) >> 32)
    write(m, ALARM_LOW, (count(m) + 10**6) & 0xFFFF_FFFF)
    write(m, CLEAR_ALARM, 1)
    assert read(m, ALARM_STATUS) == 0 and not m.devices["rtc"].alarm.pending


@pytest.mark.parametrize("offset", [0x20, 0xFFC])
def test_unused_offsets_read_zero(offset):
    assert read(machine(), offset) == 0


def test_only_word_accesses_are_valid():
    m = machine()
    from vm.cpu import GuestTrap

    with pytest.raises(GuestTrap):
        m.bus.read(RTC_BASE + TIME_LOW, 1)
