"""The block device: registers, DMA at completion through the choke point, several requests
in flight, errors, DMA over code, reset and saved state."""

from __future__ import annotations

import dataclasses

import msgpack
import pytest

from tests.unit.helpers import MODES, REG, SMALL_RAM, WFI, run_mode
from vm import Machine, MachineConfig, StopReason
from vm.asm import Program, assemble, assemble_program
from vm.backends import BlockBackend
from vm.config import ConfigError, DeviceSpec
from vm.cpu import GuestTrap
from vm.devices.block import (
    ADDRESS,
    CAPACITY,
    CMD_READ,
    CMD_WRITE,
    COMMAND,
    COUNT,
    DEFAULT_BASE,
    DONE_ACK,
    DONE_COUNT,
    DONE_ID,
    DONE_RESULT,
    ERR_BAD_ADDRESS,
    ERR_BAD_COMMAND,
    ERR_BAD_SECTOR,
    ERR_BUSY,
    KIND,
    LAST_ID,
    MAGIC,
    MAGIC_VALUE,
    QUEUE_DEPTH,
    RESULT_OK,
    SECTOR,
    SECTOR_SIZE,
    STATUS,
    STATUS_BUSY,
    STATUS_DONE,
    STATUS_ERROR,
    STATUS_FULL,
    STATUS_IN_FLIGHT_SHIFT,
    SUBMIT_RESULT,
    BlockDevice,
    Completion,
    Request,
    default_spec,
    initial_image,
)
from vm.devices.registry import BUILTIN_DEVICES
from vm.memory import RAM_BASE
from vm.nondet import NondetKind
from vm.vmstate import VMStateError, field_names, load, save

BLK = DEFAULT_BASE
PLIC_BASE = 0x0C00_0000
PLIC_SPEC = DeviceSpec("plic", "plic", PLIC_BASE)
PLIC_ENABLE = PLIC_BASE + 0x2000
PLIC_CLAIM = PLIC_BASE + 0x20_0004
MEIE = 1 << 11
RAM_END = RAM_BASE + SMALL_RAM
# Latencies short enough for guests that poll (the default host takes up to 5 ms, which
# at 0.3 ns per instruction is millions of polling instructions).
FAST_DISK = {"block_latency_ns_min": 2_000, "block_latency_ns_max": 20_000}


@pytest.fixture(autouse=True)
def _registered(monkeypatch):
    """Kind "block" as the built-in machine will name it (the registry is not this
    module's to edit); harmless once the registry lists it."""
    monkeypatch.setitem(BUILTIN_DEVICES, KIND, BlockDevice)


def machine(
    source: str | None = None,
    *,
    seed: int = 0,
    plic: bool = False,
    fast: bool = True,
    **options: int,
) -> Machine:
    devices = (PLIC_SPEC, default_spec(**options)) if plic else (default_spec(**options),)
    m = Machine(MachineConfig(ram_size=SMALL_RAM, devices=devices), host_seed=seed)
    if fast:
        m.host.profile = dataclasses.replace(m.host.profile, **FAST_DISK)
    if source is not None:
        m.bus.write_bytes(RAM_BASE, assemble(source))
        m.cpu.pc = RAM_BASE
    return m


def device(m: Machine) -> BlockDevice:
    found = m.devices["block"]
    assert isinstance(found, BlockDevice)
    return found


def rd(m: Machine, offset: int) -> int:
    return m.bus.read(BLK + offset, 4)


def wr(m: Machine, offset: int, value: int) -> None:
    m.bus.write(BLK + offset, 4, value)


def submit(m: Machine, command: int, sector: int, address: int, count: int = 1) -> int:
    """Submit from the host side of the test (as a guest store would); SUBMIT_RESULT."""
    wr(m, SECTOR, sector)
    wr(m, ADDRESS, address)
    wr(m, COUNT, count)
    wr(m, COMMAND, command)
    return rd(m, SUBMIT_RESULT)


def finish(m: Machine, budget: int = 3_000_000, mode: str = "interpreted") -> None:
    result = run_mode(m, budget, mode)
    assert result.reason is StopReason.WFI_IDLE, (result, hex(m.cpu.pc))


def x(m: Machine, name: str) -> int:
    return m.cpu.x[REG[name]]


class Recorder:
    """A choke-point port that lets every host value through and notes (kind, value,
    icount, pc): what part 3's recorder will log, and where the hart was."""

    def __init__(self, m: Machine) -> None:
        self.m = m
        self.log: list[tuple[NondetKind, object, int, int]] = []
        m.nondet.port = self

    def value(self, kind, channel, produce):
        value = produce()
        self.log.append((kind, value, self.m.cpu.icount, self.m.cpu.pc))
        return value

    def block(self) -> list[tuple[int, int]]:
        return [(v, ic) for k, v, ic, _ in self.log if k is NondetKind.BLOCK]  # type: ignore[misc]

    def block_pcs(self) -> list[int]:
        return [pc for k, _, _, pc in self.log if k is NondetKind.BLOCK]


# -- guest program pieces -----------------------------------------------------------------

# Wait for the oldest completion by polling with a backoff loop (no interrupt needed):
# a0 = its id, a1 = its result; acknowledge it.
WAIT_POLL = f"""
wait_one:
    lw   t0, {DONE_COUNT}(s0)
    bnez t0, 2f
    li   t1, 100
1:  addi t1, t1, -1
    bnez t1, 1b
    j    wait_one
2:  lw   a0, {DONE_ID}(s0)
    lw   a1, {DONE_RESULT}(s0)
    sw   zero, {DONE_ACK}(s0)
    ret
"""

# The same, sleeping in WFI: the PLIC routes source 2 to MEIP, which wakes WFI (mstatus.MIE
# stays 0, so no trap is taken); claim and complete keep the PLIC in step.
PLIC_SETUP = f"""
    li   t1, {PLIC_BASE + 4 * 2:#x}
    li   t0, 1
    sw   t0, 0(t1)               # priority of source 2
    li   t1, {PLIC_ENABLE:#x}
    li   t0, 4
    sw   t0, 0(t1)               # enable source 2
    li   t0, {MEIE:#x}
    csrw mie, t0
"""
WAIT_WFI = f"""
wait_one:
    lw   t0, {DONE_COUNT}(s0)
    bnez t0, 1f
    wfi
    j    wait_one
1:  li   t1, {PLIC_CLAIM:#x}
    lw   t2, 0(t1)
    lw   a0, {DONE_ID}(s0)
    lw   a1, {DONE_RESULT}(s0)
    sw   zero, {DONE_ACK}(s0)
    sw   t2, 0(t1)
    ret
"""


def request(command: int, sector: int, buffer: str, count: int = 1) -> str:
    return f"""
    li   t0, {sector}
    sw   t0, {SECTOR}(s0)
    la   t0, {buffer}
    sw   t0, {ADDRESS}(s0)
    li   t0, {count}
    sw   t0, {COUNT}(s0)
    li   t0, {command}
    sw   t0, {COMMAND}(s0)
"""


def fill(buffer: str, seed_value: int, words: int = SECTOR_SIZE // 4) -> str:
    """Fill `buffer` with words counting up from `seed_value` in steps of 0x01010101."""
    return f"""
    la   t0, {buffer}
    li   t1, {words}
    li   t2, {seed_value:#x}
    li   t3, 0x01010101
3:  sw   t2, 0(t0)
    add  t2, t2, t3
    addi t0, t0, 4
    addi t1, t1, -1
    bnez t1, 3b
"""


def buffers(*names: str, sectors: int = 1) -> str:
    return ".balign 512\n" + "".join(f"{n}: .space {sectors * SECTOR_SIZE}\n" for n in names)


def program(body: str, *, wait: str = WAIT_POLL, data: str = "") -> str:
    return f"_start:\n    li s0, {BLK:#x}\n{body}\n    wfi\n{wait}\n{data}"


def ram(m: Machine, prog: Program, label: str, length: int = SECTOR_SIZE) -> bytes:
    return m.bus.read_bytes(prog.address_of(label), length)


def sector_bytes(m: Machine, sector: int, count: int = 1) -> bytes:
    return bytes(device(m).disk[sector * SECTOR_SIZE : (sector + count) * SECTOR_SIZE])


def words(seed_value: int, count: int = SECTOR_SIZE // 4) -> bytes:
    return b"".join(
        ((seed_value + i * 0x01010101) & 0xFFFF_FFFF).to_bytes(4, "little") for i in range(count)
    )


# -- registers ------------------------------------------------------------------------------


def test_a_guest_reads_the_identification_registers():
    src = program(
        f"""
    lw   s1, {MAGIC}(s0)
    lw   s2, {CAPACITY}(s0)
    lw   s3, {STATUS}(s0)
    lw   s4, {LAST_ID}(s0)
    lw   s5, {DONE_ID}(s0)
    lw   s6, {DONE_COUNT}(s0)
    lw   s7, {COMMAND}(s0)
    lw   s8, 0x40(s0)
"""
    )
    m = machine(src, sectors=40)
    finish(m)
    assert x(m, "s1") == MAGIC_VALUE == int.from_bytes(b"BLK0", "little")
    assert x(m, "s2") == 40
    assert [x(m, r) for r in ("s3", "s4", "s5", "s6", "s7", "s8")] == [0] * 6


def test_sector_address_and_count_hold_what_the_guest_writes():
    src = program(
        f"""
    li   t0, 0x12345678
    sw   t0, {SECTOR}(s0)
    li   t0, 0x80001234
    sw   t0, {ADDRESS}(s0)
    li   t0, 0xFFFFFFFF
    sw   t0, {COUNT}(s0)
    sw   t0, {MAGIC}(s0)          # read-only: ignored
    sw   t0, {CAPACITY}(s0)
    sw   t0, 0x40(s0)             # no register
    lw   s1, {SECTOR}(s0)
    lw   s2, {ADDRESS}(s0)
    lw   s3, {COUNT}(s0)
    lw   s4, {MAGIC}(s0)
    lw   s5, {CAPACITY}(s0)
"""
    )
    m = machine(src)
    finish(m)
    assert [x(m, r) for r in ("s1", "s2", "s3")] == [0x12345678, 0x80001234, 0xFFFF_FFFF]
    assert (x(m, "s4"), x(m, "s5")) == (MAGIC_VALUE, 128)


def test_only_aligned_word_accesses_are_valid():
    m = machine()
    with pytest.raises(GuestTrap):
        m.bus.read(BLK + STATUS, 1)
    with pytest.raises(GuestTrap):
        m.bus.write(BLK + SECTOR, 2, 1)


# -- the disk image ---------------------------------------------------------------------------


def test_the_initial_image_is_a_function_of_the_options():
    image = initial_image(4, 0)
    assert len(image) == 4 * SECTOR_SIZE
    assert [int.from_bytes(image[s * 512 : s * 512 + 4], "little") for s in range(4)] == [
        0,
        1,
        2,
        3,
    ]
    assert image[4:8] == bytes([4, 5, 6, 7])
    assert initial_image(4, 9) != image
    assert device(machine(sectors=4)).disk == image
    assert device(machine(sectors=4, pattern=9)).disk == initial_image(4, 9)
    # Another host changes nothing about it: it is guest state, made from the configuration.
    assert device(machine(seed=1)).disk == device(machine(seed=2)).disk


@pytest.mark.parametrize(
    "options",
    [{"sectors": 0}, {"sectors": 1 << 20}, {"pattern": 256}, {"pattern": -1}, {"sectors": True}],
)
def test_bad_options_are_configuration_errors(options):
    with pytest.raises(ConfigError, match="block"):
        machine(**options)


# -- requests through a guest ------------------------------------------------------------------


WRITE_THEN_READ = program(
    fill("bufa", 0x04030201)
    + request(CMD_WRITE, 9, "bufa")
    + f"""
submitted:
    lw   s1, {LAST_ID}(s0)
    lw   s2, {SUBMIT_RESULT}(s0)
    lw   s9, {STATUS}(s0)
    call wait_one
    mv   s3, a0
    mv   s4, a1
"""
    + request(CMD_READ, 9, "bufb")
    + """
    call wait_one
    mv   s5, a0
    mv   s6, a1
""",
    data=buffers("bufa", "bufb"),
)


@pytest.mark.parametrize("mode", MODES)
def test_a_guest_writes_a_sector_and_reads_it_back(mode):
    prog = assemble_program(WRITE_THEN_READ)
    m = machine(WRITE_THEN_READ)
    finish(m, mode=mode)
    assert ram(m, prog, "bufb") == ram(m, prog, "bufa") == words(0x04030201)
    assert sector_bytes(m, 9) == words(0x04030201)
    assert sector_bytes(m, 8) == initial_image(9, 0)[8 * 512 :]  # its neighbour untouched
    assert [x(m, r) for r in ("s1", "s2", "s3", "s4", "s5", "s6")] == [1, 0, 1, 0, 2, 0]
    assert x(m, "s9") == STATUS_BUSY | 1 << STATUS_IN_FLIGHT_SHIFT
    assert m.nondet.counts[NondetKind.BLOCK] == 2
    assert m.nondet.counts[NondetKind.RANDOM] == m.nondet.counts[NondetKind.CLOCK_HOST] == 0
    assert rd(m, STATUS) == 0 and not device(m).irq.level


def test_every_execution_mode_ends_in_the_same_state():
    ends = []
    for mode in MODES:
        m = machine(WRITE_THEN_READ)
        finish(m, mode=mode)
        ends.append((m.cpu.icount, list(m.cpu.x), bytes(m.bus.ram), bytes(device(m).disk)))
    assert ends[0] == ends[1] == ends[2]


def test_completion_times_follow_the_host_but_a_waiting_guest_ends_with_the_same_data():
    prog = assemble_program(WRITE_THEN_READ)
    times, data = set(), set()
    for seed in range(6):
        m = machine(WRITE_THEN_READ, seed=seed)
        recorder = Recorder(m)
        finish(m)
        assert [v for v, _ in recorder.block()] == [1, 2]
        times.add(tuple(ic for _, ic in recorder.block()))
        data.add((ram(m, prog, "bufa"), ram(m, prog, "bufb"), bytes(device(m).disk)))
    assert len(times) > 1  # the host decided when each completion reached the guest
    assert len(data) == 1  # and the guest, which waited, ended with the same data


def test_a_write_takes_its_data_from_ram_at_submission():
    src = program(
        fill("bufa", 0x11111111)
        + request(CMD_WRITE, 3, "bufa")
        + fill("bufa", 0x77777777)  # while the request is in flight
        + """
    call wait_one
"""
        + request(CMD_READ, 3, "bufb")
        + """
    call wait_one
""",
        data=buffers("bufa", "bufb"),
    )
    prog = assemble_program(src)
    m = machine(src)
    finish(m)
    assert ram(m, prog, "bufa") == words(0x77777777)
    assert sector_bytes(m, 3) == ram(m, prog, "bufb") == words(0x11111111)


def test_a_read_of_several_sectors_lands_in_ram_at_completion_only():
    src = program(
        request(CMD_READ, 20, "bufa", count=3)
        + f"""
    la   t0, bufa
    lw   s1, 0(t0)                # before the completion: still zero
    lw   s2, {SECTOR_SIZE}(t0)
    call wait_one
    la   t0, bufa
    lw   s3, 0(t0)
    lw   s4, {SECTOR_SIZE}(t0)
    lw   s5, {2 * SECTOR_SIZE}(t0)
""",
        data=buffers("bufa", sectors=3),
    )
    prog = assemble_program(src)
    m = machine(src)
    finish(m)
    assert [x(m, r) for r in ("s1", "s2", "s3", "s4", "s5")] == [0, 0, 20, 21, 22]
    assert ram(m, prog, "bufa", 3 * SECTOR_SIZE) == sector_bytes(m, 20, 3)


# -- several requests in flight -----------------------------------------------------------------

# Four reads submitted back to back (within the first host slice, which is at least 64
# instructions, so none can complete in between), a fifth refused, then the completions
# taken in the order they come, their ids stored at `order`.
FOUR_IN_FLIGHT = program(
    f"""
    li   t0, 1
    sw   t0, {COUNT}(s0)
    li   t3, {CMD_READ}
"""
    + "".join(
        f"""
    li   t0, {sector}
    sw   t0, {SECTOR}(s0)
    la   t0, buf{sector}
    sw   t0, {ADDRESS}(s0)
    sw   t3, {COMMAND}(s0)
"""
        for sector in range(5)
    )
    + f"""
    lw   s1, {STATUS}(s0)
    lw   s2, {SUBMIT_RESULT}(s0)
    lw   s3, {LAST_ID}(s0)
    la   s4, order
    li   s5, 4
4:  call wait_one
    sw   a0, 0(s4)
    sw   a1, 16(s4)
    addi s4, s4, 4
    addi s5, s5, -1
    bnez s5, 4b
    lw   s6, {STATUS}(s0)
"""
    + request(CMD_READ, 4, "buf4")
    + f"""
    lw   s7, {SUBMIT_RESULT}(s0)
    call wait_one
    mv   s8, a0
""",
    data=".balign 4\norder: .space 32\n" + buffers(*(f"buf{i}" for i in range(5))),
)


assert QUEUE_DEPTH == 4  # the program above fills every slot


def completion_order(m: Machine, prog: Program) -> list[int]:
    raw = m.bus.read_bytes(prog.address_of("order"), 16)
    return [int.from_bytes(raw[i : i + 4], "little") for i in range(0, 16, 4)]


def test_four_requests_in_flight_complete_in_the_hosts_order_and_a_fifth_is_refused():
    prog = assemble_program(FOUR_IN_FLIGHT)
    orders = set()
    for seed in range(8):
        m = machine(FOUR_IN_FLIGHT, seed=seed)
        recorder = Recorder(m)
        finish(m)
        order = completion_order(m, prog)
        # All four were submitted at the same host time: the host's latencies decide.
        latency = m.host.block_latency_ns
        assert order == sorted(range(1, 5), key=lambda i: (latency(i - 1), i))
        assert order == [v for v, _ in recorder.block()][:4]
        assert m.bus.read_bytes(prog.address_of("order") + 16, 16) == bytes(16)  # all OK
        orders.add(tuple(order))
        assert x(m, "s1") == STATUS_BUSY | STATUS_FULL | STATUS_ERROR | 4 << STATUS_IN_FLIGHT_SHIFT
        assert (x(m, "s2"), x(m, "s3")) == (ERR_BUSY, 4)  # refused: no id taken
        assert x(m, "s6") == STATUS_ERROR  # slots free again, the last COMMAND's error kept
        assert (x(m, "s7"), x(m, "s8")) == (RESULT_OK, 5)
        for sector in range(5):
            assert ram(m, prog, f"buf{sector}") == sector_bytes(m, sector)


def test_completion_order_differs_from_submission_order_for_some_host():
    prog = assemble_program(FOUR_IN_FLIGHT)
    orders = set()
    for seed in range(8):
        m = machine(FOUR_IN_FLIGHT, seed=seed)
        finish(m)
        orders.add(tuple(completion_order(m, prog)))
    assert len(orders) > 1
    assert any(order != (1, 2, 3, 4) for order in orders)


def test_a_read_and_a_write_of_one_sector_see_each_other_in_completion_order():
    src = program(
        fill("bufa", 0x55555555)
        + request(CMD_WRITE, 7, "bufa")
        + request(CMD_READ, 7, "bufb")
        + """
    call wait_one
    call wait_one
""",
        data=buffers("bufa", "bufb"),
    )
    prog = assemble_program(src)
    seen = set()
    for seed in range(12):
        m = machine(src, seed=seed)
        recorder = Recorder(m)
        finish(m)
        write_first = [v for v, _ in recorder.block()] == [1, 2]
        expected = words(0x55555555) if write_first else initial_image(8, 0)[7 * 512 :]
        assert ram(m, prog, "bufb") == expected
        assert sector_bytes(m, 7) == words(0x55555555)
        seen.add(write_first)
    assert seen == {True, False}  # the host's order, which the log records, decides


# -- the choke point -------------------------------------------------------------------------


def test_the_completion_the_guest_sees_is_the_one_the_choke_point_returns():
    """As in replay: a port supplies the ids (the host's live ones are dropped), and the
    device completes exactly those, each once."""
    src = program(
        request(CMD_READ, 0, "buf0")
        + request(CMD_READ, 1, "buf1")
        + """
    call wait_one
    mv   s1, a0
    call wait_one
    mv   s2, a0
""",
        data=buffers("buf0", "buf1"),
    )
    prog = assemble_program(src)
    m = machine(src)

    class Replay:
        def __init__(self) -> None:
            self.script = [2, 1]

        def value(self, kind, channel, produce):
            assert kind is NondetKind.BLOCK and channel == m.backends["block"].index
            return self.script.pop(0)

    m.nondet.port = port = Replay()
    finish(m)
    assert (x(m, "s1"), x(m, "s2")) == (2, 1)
    assert port.script == [] and m.nondet.counts[NondetKind.BLOCK] == 2
    assert ram(m, prog, "buf0") == sector_bytes(m, 0)
    assert ram(m, prog, "buf1") == sector_bytes(m, 1)
    backend = m.backends["block"]
    assert isinstance(backend, BlockBackend)
    assert not backend.in_flight and not backend.completed


def test_a_completion_for_a_request_not_in_flight_changes_nothing():
    m = machine()
    dev = device(m)
    assert submit(m, CMD_READ, 0, RAM_BASE) == RESULT_OK
    before = save(BlockDevice.VMSTATE, dev)
    assert dev.complete(99) is False
    assert save(BlockDevice.VMSTATE, dev) == before
    assert dev.complete(1) is True
    assert dev.complete(1) is False  # not twice


def test_the_host_side_queue_and_timer_are_the_backends():
    m = machine()
    backend = m.block_backend("block")
    assert backend is m.backends["block"]
    submit(m, CMD_READ, 0, RAM_BASE)
    assert [entry[2] for entry in backend.in_flight] == [1]
    assert backend.timer.pending and backend.timer.clock.value == "realtime"
    with pytest.raises(ValueError, match="block"):
        m.char_backend("block")
    backend.arrive(b"stimulus on a disk's channel is dropped")
    assert not backend.has_input()


# -- interrupts and WFI ------------------------------------------------------------------------


@pytest.fixture
def needs_plic():
    if "plic" not in BUILTIN_DEVICES:
        pytest.skip("this build has no PLIC")


def test_the_line_is_high_exactly_while_completions_wait():
    m = machine()
    dev = device(m)
    submit(m, CMD_READ, 0, RAM_BASE + 0x1000)
    submit(m, CMD_READ, 1, RAM_BASE + 0x1200)
    assert not dev.irq.level and rd(m, STATUS) & STATUS_DONE == 0
    dev.complete(2)
    dev.complete(1)
    assert dev.irq.level and rd(m, DONE_COUNT) == 2 and rd(m, STATUS) & STATUS_DONE
    assert (rd(m, DONE_ID), rd(m, DONE_RESULT)) == (2, RESULT_OK)
    wr(m, DONE_ACK, 0)
    assert dev.irq.level and rd(m, DONE_ID) == 1
    wr(m, DONE_ACK, 0)
    assert not dev.irq.level and rd(m, DONE_ID) == 0 and rd(m, DONE_COUNT) == 0
    wr(m, DONE_ACK, 0)  # nothing waits: ignored
    assert rd(m, DONE_COUNT) == 0


@pytest.mark.usefixtures("needs_plic")
def test_a_guest_sleeps_in_wfi_until_the_completion_interrupt():
    """With the default (slow) host: an idle hart lets host time pass to the disk's next
    completion, which reaches the guest while it sleeps."""
    src = program(
        PLIC_SETUP
        + fill("bufa", 0x0A0B0C0D)
        + request(CMD_WRITE, 100, "bufa")
        + request(CMD_READ, 100, "bufb", count=2)
        + """
    call wait_one
    mv   s1, a0
    call wait_one
    mv   s2, a0
""",
        wait=WAIT_WFI,
        data=buffers("bufa", "bufb", sectors=2),
    )
    prog = assemble_program(src)
    for seed in range(4):
        m = machine(src, seed=seed, plic=True, fast=False)
        recorder = Recorder(m)
        finish(m)
        assert sorted([x(m, "s1"), x(m, "s2")]) == [1, 2]
        assert m.host_time.realtime_ns >= min(m.host.block_latency_ns(i) for i in (0, 1))
        ids = [v for v, _ in recorder.block()]
        bufb = ram(m, prog, "bufb", 2 * SECTOR_SIZE)
        # The READ sees the WRITE only if the WRITE completed first (the host's choice).
        first = words(0x0A0B0C0D) if ids == [1, 2] else initial_image(101, 0)[100 * 512 :]
        assert bufb == first + sector_bytes(m, 101)
        # Each completion came while the hart slept: just after a wfi.
        assert all(m.bus.fetch(pc - 4) == WFI for pc in recorder.block_pcs())


# -- errors ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("command", "sector", "address", "count", "error"),
    [
        (0, 0, RAM_BASE + 0x8000, 1, ERR_BAD_COMMAND),
        (3, 0, RAM_BASE + 0x8000, 1, ERR_BAD_COMMAND),
        (0xFFFF_FFFF, 0, RAM_BASE + 0x8000, 1, ERR_BAD_COMMAND),
        (CMD_READ, 0, RAM_BASE + 0x8000, 0, ERR_BAD_SECTOR),
        (CMD_READ, 128, RAM_BASE + 0x8000, 1, ERR_BAD_SECTOR),
        (CMD_WRITE, 127, RAM_BASE + 0x8000, 2, ERR_BAD_SECTOR),
        (CMD_READ, 0xFFFF_FFFF, RAM_BASE + 0x8000, 1, ERR_BAD_SECTOR),
        (CMD_READ, 1, RAM_BASE + 0x8000, 0xFFFF_FFFF, ERR_BAD_SECTOR),
        (CMD_READ, 0, 0x1000_0000, 1, ERR_BAD_ADDRESS),  # the UART: no DMA to MMIO
        (CMD_WRITE, 0, 0x1000, 1, ERR_BAD_ADDRESS),  # the boot ROM
        (CMD_READ, 0, 0, 1, ERR_BAD_ADDRESS),
        (CMD_READ, 0, RAM_BASE - 4, 1, ERR_BAD_ADDRESS),
        (CMD_READ, 0, RAM_END - 256, 1, ERR_BAD_ADDRESS),
        (CMD_WRITE, 0, RAM_END - 512, 2, ERR_BAD_ADDRESS),
        (CMD_READ, 0, 0xFFFF_FFFF, 1, ERR_BAD_ADDRESS),
    ],
)
def test_a_bad_request_is_refused_at_once_with_an_error_code(
    command, sector, address, count, error
):
    src = program(
        f"""
    li   t0, {sector}
    sw   t0, {SECTOR}(s0)
    li   t0, {address}
    sw   t0, {ADDRESS}(s0)
    li   t0, {count}
    sw   t0, {COUNT}(s0)
    li   t0, {command}
    sw   t0, {COMMAND}(s0)
    lw   s1, {SUBMIT_RESULT}(s0)
    lw   s2, {STATUS}(s0)
    lw   s3, {LAST_ID}(s0)
"""
        + request(CMD_READ, 0, "bufa")
        + f"""
    lw   s4, {SUBMIT_RESULT}(s0)
    lw   s5, {LAST_ID}(s0)
    call wait_one
""",
        data=buffers("bufa"),
    )
    m = machine(src)
    ram_before = bytearray(m.bus.ram)
    finish(m)
    assert (x(m, "s1"), x(m, "s2"), x(m, "s3")) == (error, STATUS_ERROR, 0)
    # The next good request takes the first id and clears the error.
    assert (x(m, "s4"), x(m, "s5")) == (RESULT_OK, 1)
    assert m.nondet.counts[NondetKind.BLOCK] == 1
    assert device(m).disk == initial_image(128, 0)
    # Nothing but the good read's buffer changed in RAM.
    bufa = assemble_program(src).address_of("bufa") - RAM_BASE
    ram_before[bufa : bufa + SECTOR_SIZE] = sector_bytes(m, 0)
    assert bytes(m.bus.ram) == ram_before


def test_a_loaded_request_that_cannot_run_completes_with_an_error_not_an_exception():
    m = machine()
    dev = device(m)
    dev.in_flight = [
        Request(1, CMD_READ, 0, 0x1000_0000, 1),
        Request(2, CMD_WRITE, 0, RAM_BASE, 1, b"short"),
        Request(3, 9, 0, RAM_BASE, 1),
        Request(4, CMD_READ, 500, RAM_BASE, 1),
    ]
    for request_id in (1, 2, 3, 4):
        assert dev.complete(request_id)
    assert dev.done == [
        Completion(1, ERR_BAD_ADDRESS),
        Completion(2, ERR_BAD_SECTOR),
        Completion(3, ERR_BAD_COMMAND),
        Completion(4, ERR_BAD_SECTOR),
    ]
    assert dev.disk == initial_image(128, 0)


def test_request_ids_wrap_past_zero():
    m = machine()
    dev = device(m)
    dev.next_id = 0xFFFF_FFFF
    submit(m, CMD_READ, 0, RAM_BASE + 0x8000)
    submit(m, CMD_READ, 0, RAM_BASE + 0x8000)
    assert [r.id for r in dev.in_flight] == [0xFFFF_FFFF, 1]
    assert rd(m, LAST_ID) == 1


# -- DMA over code ---------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["interpreted", "translated"])
def test_a_dma_read_over_code_that_already_ran_changes_what_runs_next(mode):
    src = program(
        """
    call patch
    mv   s1, a0
"""
        + request(CMD_WRITE, 3, "new_code")
        + """
    call wait_one
"""
        + request(CMD_READ, 3, "patch")
        + """
    call wait_one
    call patch
    mv   s2, a0
""",
        data="""
.balign 512
patch:
    li   a0, 1
    ret
.balign 512
new_code:
    li   a0, 2
    ret
.balign 512
""",
    )
    m = machine(src)
    finish(m, mode=mode)
    assert (x(m, "s1"), x(m, "s2")) == (1, 2)


@pytest.mark.parametrize("mode", ["interpreted", "translated"])
def test_a_dma_read_over_the_loop_the_guest_is_spinning_in_replaces_it(mode):
    """The guest polls in a loop that the completion itself overwrites: the instruction
    after the completion comes from the new code (the old loop, translated or decoded, is
    invalidated by the bus's one write path)."""
    loop = f"""
spin:
    lw   t0, {DONE_COUNT}(s0)
    beqz t0, spin
    li   a0, 1
    wfi
"""
    replacement = loop.replace("li   a0, 1", "li   a0, 2")
    src = program(request(CMD_READ, 5, "spin") + "    j spin\n", data=".balign 512\n" + loop)
    prog = assemble_program(src)
    spin = prog.address_of("spin")
    new_code = assemble(replacement, base=spin)
    m = machine(src)
    device(m).disk[5 * SECTOR_SIZE : 5 * SECTOR_SIZE + len(new_code)] = new_code
    device(m).disk[5 * SECTOR_SIZE + len(new_code) : 6 * SECTOR_SIZE] = bytes(
        SECTOR_SIZE - len(new_code)
    )
    finish(m, mode=mode)
    assert x(m, "a0") == 2
    assert m.cpu.icount > 100  # it did spin in the old loop first


# -- reset -----------------------------------------------------------------------------------


def test_a_guest_reset_drops_requests_and_keeps_the_disk_and_the_id_counter():
    m = machine()
    dev = device(m)
    submit(m, CMD_WRITE, 0, RAM_BASE + 0x8000)
    dev.complete(1)
    submit(m, CMD_READ, 2, RAM_BASE + 0x8000)
    wr(m, SECTOR, 7)
    disk = bytes(dev.disk)
    assert disk != initial_image(128, 0)  # the write landed
    m.system_reset()
    assert (dev.in_flight, dev.done, dev.sector, dev.last_id) == ([], [], 0, 0)
    assert not dev.irq.level and rd(m, STATUS) == 0
    assert bytes(dev.disk) == disk and dev.next_id == 3
    backend = m.backends["block"]
    assert isinstance(backend, BlockBackend)
    assert not backend.in_flight and not backend.timer.pending
    # The host's completion of request 2 never arrives.
    m.bus.write_bytes(RAM_BASE, assemble("spin: j spin"))
    m.cpu.pc = RAM_BASE
    m.run(200_000)
    assert m.nondet.counts[NondetKind.BLOCK] == 0


# -- saved state -------------------------------------------------------------------------------


def guest_state(dev: BlockDevice) -> dict[str, object]:
    """Every instance attribute the digest counts (all but the host-side ones)."""
    skip = {"host", "spec", "name"} | BlockDevice.HOST_SIDE
    return {k: v for k, v in vars(dev).items() if k not in skip}


def test_vmstate_saves_every_guest_state_attribute():
    dev = device(machine())
    assert set(guest_state(dev)) == set(field_names(BlockDevice.VMSTATE))


def busy_machine(seed: int = 0) -> Machine:
    """Two requests in flight (a write with its data) and one completion waiting."""
    m = machine(seed=seed, sectors=16, pattern=3)
    m.bus.write_bytes(RAM_BASE + 0x8000, bytes(range(256)) * 2)
    submit(m, CMD_READ, 1, RAM_BASE + 0x9000, 2)
    submit(m, CMD_WRITE, 4, RAM_BASE + 0x8000)
    submit(m, CMD_READ, 4, RAM_BASE + 0xA000)
    device(m).complete(1)
    wr(m, SECTOR, 11)
    return m


def test_the_vmstate_round_trip_restores_requests_in_flight_and_the_disk():
    m = busy_machine()
    dev = device(m)
    data = msgpack.unpackb(msgpack.packb(save(BlockDevice.VMSTATE, dev)), raw=False)
    fresh_machine = machine(seed=5, sectors=16, pattern=3)
    fresh = device(fresh_machine)
    load(BlockDevice.VMSTATE, fresh, data)
    assert guest_state(fresh) == guest_state(dev)
    assert fresh.in_flight[0] == Request(
        2, CMD_WRITE, 4, RAM_BASE + 0x8000, 1, bytes(range(256)) * 2
    )
    assert isinstance(fresh.disk, bytearray)
    # post_load handed the requests in flight to the (fresh) host again.
    backend = fresh_machine.backends["block"]
    assert isinstance(backend, BlockBackend)
    assert sorted(entry[2] for entry in backend.in_flight) == [2, 3]
    assert backend.timer.pending
    # Both complete alike from here.
    for d in (dev, fresh):
        d.complete(3)
        d.complete(2)
    assert guest_state(fresh) == guest_state(dev)


def test_a_load_replaces_what_the_host_was_doing():
    m = busy_machine()
    data = save(BlockDevice.VMSTATE, device(m))
    other = machine(sectors=16, pattern=3)
    submit(other, CMD_READ, 0, RAM_BASE + 0x8000)
    submit(other, CMD_READ, 0, RAM_BASE + 0x8000)
    submit(other, CMD_READ, 0, RAM_BASE + 0x8000)
    load(BlockDevice.VMSTATE, device(other), data)
    backend = other.backends["block"]
    assert isinstance(backend, BlockBackend)
    assert sorted(entry[2] for entry in backend.in_flight) == [2, 3]


@pytest.mark.parametrize(
    ("path", "value", "match"),
    [
        (("in_flight", 0), [2, 2, 4, RAM_BASE, 1], "5"),
        (("in_flight", 0), {"id": 2}, "list"),
        (("in_flight", 0), [2, 2, 4, RAM_BASE, 1, "data"], "Bytes"),
        (("in_flight", 0), [1 << 32, 2, 4, RAM_BASE, 1, b""], "range"),
        (("done", 0), [1, 256], "range"),
        (("in_flight",), [[1, 1, 0, RAM_BASE, 1, b""]] * 5, "maximum"),
    ],
)
def test_a_bad_saved_request_is_refused_whole(path, value, match):
    m = busy_machine()
    data = save(BlockDevice.VMSTATE, device(m))
    target = data["fields"]
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    fresh = device(machine(sectors=16, pattern=3))
    before = guest_state(fresh)
    with pytest.raises(VMStateError, match=match):
        load(BlockDevice.VMSTATE, fresh, data)
    assert guest_state(fresh) == before


def test_the_disk_is_digested_and_the_host_side_is_not():
    from vm.digest import component_digests

    m = machine()
    before = component_digests(m)["block"]
    m.block_backend("block").submit(42)  # host-side only
    assert component_digests(m)["block"] == before
    device(m).disk[1000] ^= 1
    assert component_digests(m)["block"] != before


def test_savevm_with_requests_in_flight_then_loadvm_on_another_host_ends_alike():
    """A snapshot taken while requests are in flight: loaded into a machine with another
    host, the requests are re-submitted to that host, complete, and the waiting guest ends
    with the same data as the machine that went on."""
    from vm.snapshot import loadvm, savevm

    prog = assemble_program(WRITE_THEN_READ)
    a = machine(WRITE_THEN_READ)
    a.set_breakpoints({prog.address_of("submitted")})  # just after the write's COMMAND
    assert a.run(10_000).reason is StopReason.BREAKPOINT
    a.set_breakpoints(set())
    assert device(a).in_flight
    snapshot = savevm(a)
    b = machine(seed=7)
    loadvm(b, snapshot)
    assert [entry[2] for entry in b.backends["block"].in_flight] == [1]  # type: ignore[union-attr]
    finish(a)
    finish(b)
    for m in (a, b):
        assert ram(m, prog, "bufb") == words(0x04030201) == sector_bytes(m, 9)
    assert guest_state(device(a)) == guest_state(device(b))
