"""The entropy device: registers, host entropy through the choke point, reset, saved state."""

from __future__ import annotations

import msgpack
import pytest

from tests.unit.helpers import MODES, REG, SMALL_RAM, run_mode
from vm import Machine, MachineConfig, StopReason
from vm.asm import assemble
from vm.cpu import GuestTrap
from vm.devices.entropy import (
    COUNT,
    CTRL,
    CTRL_ENABLE,
    DATA,
    DEFAULT_BASE,
    KIND,
    MAGIC,
    MAGIC_VALUE,
    STATUS,
    STATUS_READY,
    EntropyDevice,
    default_spec,
)
from vm.devices.registry import BUILTIN_DEVICES
from vm.memory import RAM_BASE
from vm.nondet import NondetKind
from vm.vmstate import VMStateError, field_names, load, save

RNG = DEFAULT_BASE
OUT = RAM_BASE + 0x1000  # where the guest stores the words it read


@pytest.fixture(autouse=True)
def _registered(monkeypatch):
    """Kind "entropy" as the built-in machine will name it (the registry is not this
    module's to edit); harmless once the registry lists it."""
    monkeypatch.setitem(BUILTIN_DEVICES, KIND, EntropyDevice)


def machine(source: str | None = None, *, seed: int = 0) -> Machine:
    m = Machine(MachineConfig(ram_size=SMALL_RAM, devices=(default_spec(),)), host_seed=seed)
    if source is not None:
        m.bus.write_bytes(RAM_BASE, assemble(source))
        m.cpu.pc = RAM_BASE
    return m


def device(m: Machine) -> EntropyDevice:
    found = m.devices["entropy"]
    assert isinstance(found, EntropyDevice)
    return found


def finish(m: Machine, mode: str = "interpreted") -> None:
    result = run_mode(m, 100_000, mode)
    assert result.reason is StopReason.WFI_IDLE, (result, hex(m.cpu.pc))


def x(m: Machine, name: str) -> int:
    return m.cpu.x[REG[name]]


def stored_words(m: Machine, count: int) -> list[int]:
    raw = m.bus.read_bytes(OUT, 4 * count)
    return [int.from_bytes(raw[i : i + 4], "little") for i in range(0, 4 * count, 4)]


def host_words(m: Machine, first: int, count: int) -> list[int]:
    """What the host model hands out for requests first..first+count-1."""
    return [int.from_bytes(m.host.entropy(i, 4), "little") for i in range(first, first + count)]


# Enable the device, store `n` DATA words at OUT, then read COUNT and STATUS.
def reader(n: int) -> str:
    return f"""
    li   s0, {RNG:#x}
    li   s1, {OUT:#x}
    li   t0, {CTRL_ENABLE}
    sw   t0, {CTRL}(s0)
    li   t1, {n}
1:  lw   t0, {DATA}(s0)
    sw   t0, 0(s1)
    addi s1, s1, 4
    addi t1, t1, -1
    bnez t1, 1b
    lw   s2, {COUNT}(s0)
    lw   s3, {STATUS}(s0)
    lw   s4, {CTRL}(s0)
    wfi
"""


# -- registers ------------------------------------------------------------------------------


def test_a_guest_reads_the_registers_after_power_on():
    m = machine(
        f"""
    li   s0, {RNG:#x}
    lw   s1, {MAGIC}(s0)
    lw   s2, {CTRL}(s0)
    lw   s3, {STATUS}(s0)
    lw   s4, {COUNT}(s0)
    lw   s5, {DATA}(s0)           # disabled: 0, and nothing taken from the host
    lw   s6, 0x40(s0)             # no register
    wfi
"""
    )
    finish(m)
    assert x(m, "s1") == MAGIC_VALUE == int.from_bytes(b"RNG0", "little")
    assert [x(m, r) for r in ("s2", "s3", "s4", "s5", "s6")] == [0] * 5
    assert m.nondet.counts[NondetKind.RANDOM] == 0
    assert device(m).host_requests == 0


def test_ctrl_keeps_only_enable_and_status_follows_it():
    m = machine(
        f"""
    li   s0, {RNG:#x}
    li   t0, 0xFFFFFFFF
    sw   t0, {CTRL}(s0)
    lw   s1, {CTRL}(s0)
    lw   s2, {STATUS}(s0)
    li   t0, 0xFFFFFFFE
    sw   t0, {CTRL}(s0)
    lw   s3, {CTRL}(s0)
    lw   s4, {STATUS}(s0)
    sw   t0, {MAGIC}(s0)          # read-only: ignored
    sw   t0, {STATUS}(s0)
    sw   t0, {DATA}(s0)
    lw   s5, {MAGIC}(s0)
    wfi
"""
    )
    finish(m)
    assert (x(m, "s1"), x(m, "s2")) == (CTRL_ENABLE, STATUS_READY)
    assert (x(m, "s3"), x(m, "s4")) == (0, 0)
    assert x(m, "s5") == MAGIC_VALUE
    assert m.nondet.counts[NondetKind.RANDOM] == 0


@pytest.mark.parametrize("mode", MODES)
def test_each_data_read_is_one_host_word_through_the_choke_point(mode):
    m = machine(reader(6))
    finish(m, mode)
    assert stored_words(m, 6) == host_words(m, 0, 6)
    assert (x(m, "s2"), x(m, "s3"), x(m, "s4")) == (6, STATUS_READY, CTRL_ENABLE)
    assert m.nondet.counts[NondetKind.RANDOM] == 6
    assert m.nondet.counts[NondetKind.CLOCK_HOST] == m.nondet.counts[NondetKind.BLOCK] == 0
    assert device(m).host_requests == 6


def test_another_host_gives_other_words_and_the_same_host_the_same():
    words = {}
    for seed in (1, 2, 1):
        m = machine(reader(4), seed=seed)
        finish(m)
        words.setdefault(seed, []).append(stored_words(m, 4))
    assert words[1][0] == words[1][1]
    assert words[1][0] != words[2][0]


def test_a_replayed_value_reaches_the_guest_and_the_host_is_not_asked():
    m = machine(reader(3))

    class Replay:
        def __init__(self) -> None:
            self.script = [b"\x01\x02\x03\x04", b"\xff\xff\xff\xff", b"\x10\x00\x00\x00"]

        def value(self, kind, channel, produce):
            assert kind is NondetKind.RANDOM
            return self.script.pop(0)

    m.nondet.port = Replay()
    finish(m)
    assert stored_words(m, 3) == [0x0403_0201, 0xFFFF_FFFF, 0x10]
    assert device(m).host_requests == 0  # the live values were never produced
    assert x(m, "s2") == 3


def test_a_replayed_value_longer_than_a_word_is_cut_to_32_bits():
    m = machine()
    m.nondet.port = type("Port", (), {"value": lambda self, k, c, p: b"\x01" * 8})()
    m.bus.write(RNG + CTRL, 4, CTRL_ENABLE)
    assert m.bus.read(RNG + DATA, 4) == 0x0101_0101


def test_count_can_be_set_and_wraps():
    m = machine(
        f"""
    li   s0, {RNG:#x}
    li   t0, 1
    sw   t0, {CTRL}(s0)
    li   t0, 0xFFFFFFFF
    sw   t0, {COUNT}(s0)
    lw   s1, {COUNT}(s0)
    lw   t0, {DATA}(s0)
    lw   s2, {COUNT}(s0)
    lw   t0, {DATA}(s0)
    lw   s3, {COUNT}(s0)
    wfi
"""
    )
    finish(m)
    assert [x(m, r) for r in ("s1", "s2", "s3")] == [0xFFFF_FFFF, 0, 1]
    assert m.nondet.counts[NondetKind.RANDOM] == 2


def test_only_aligned_word_accesses_are_valid():
    m = machine()
    with pytest.raises(GuestTrap):
        m.bus.read(RNG + DATA, 1)
    with pytest.raises(GuestTrap):
        m.bus.write(RNG + CTRL, 2, 1)
    assert m.nondet.counts[NondetKind.RANDOM] == 0


def test_the_default_spec_uses_no_interrupt():
    spec = default_spec()
    assert (spec.kind, spec.base, spec.irq) == ("entropy", 0x1000_1000, None)


# -- reset and saved state ---------------------------------------------------------------------


def test_a_guest_reset_disables_and_clears_the_count_but_the_host_stream_goes_on():
    m = machine(reader(3))
    finish(m)
    m.system_reset()
    dev = device(m)
    assert (dev.enabled, dev.words_served, dev.host_requests) == (False, 0, 3)
    m.bus.write(RNG + CTRL, 4, CTRL_ENABLE)
    # Fresh bytes after the reset: the host does not hand out the same words again.
    assert m.bus.read(RNG + DATA, 4) == host_words(m, 3, 1)[0]


def guest_state(dev: EntropyDevice) -> dict[str, object]:
    skip = {"host", "spec", "name"} | EntropyDevice.HOST_SIDE
    return {k: v for k, v in vars(dev).items() if k not in skip}


def test_vmstate_saves_every_guest_state_attribute():
    assert set(guest_state(device(machine()))) == set(field_names(EntropyDevice.VMSTATE))


def test_the_vmstate_round_trip_restores_the_registers_not_the_host_stream():
    m = machine(reader(5))
    finish(m)
    data = msgpack.unpackb(msgpack.packb(save(EntropyDevice.VMSTATE, device(m))), raw=False)
    assert data["fields"] == {"enabled": True, "words_served": 5}
    fresh = device(machine(seed=9))
    load(EntropyDevice.VMSTATE, fresh, data)
    assert guest_state(fresh) == guest_state(device(m))
    assert fresh.host_requests == 0


def test_a_bad_section_is_refused_whole():
    data = save(EntropyDevice.VMSTATE, device(machine()))
    data["fields"]["words_served"] = 1 << 32
    fresh = device(machine())
    with pytest.raises(VMStateError, match="words_served"):
        load(EntropyDevice.VMSTATE, fresh, data)
    assert guest_state(fresh) == {"enabled": False, "words_served": 0}


def test_the_digest_counts_the_registers_not_the_host_stream():
    from vm.digest import component_digests

    m = machine()
    before = component_digests(m)["entropy"]
    device(m).host_requests += 1
    assert component_digests(m)["entropy"] == before
    device(m).words_served += 1
    assert component_digests(m)["entropy"] != before
