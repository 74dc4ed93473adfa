"""The state digest (vm.digest): a pure function of guest state, by component, field-level
diffs, canonical RAM, host-side state excluded, and a page cache that agrees with a fresh
computation."""

from __future__ import annotations

import collections
import dataclasses
import enum
import gc
import random
import weakref
from collections.abc import Callable

import pytest
from hypothesis import given
from hypothesis import strategies as st

from vm import Machine, MachineConfig, StopReason
from vm import digest as vd
from vm.asm import assemble, encode
from vm.clock import ClockKind
from vm.config import CLINT, FINISHER, DeviceSpec
from vm.csr import MIP_MSIP, MSTATUS_MPIE
from vm.devices import Device, DeviceHost, IrqLine
from vm.digest import Difference, DigestError, component_digests, diff, digest

from .helpers import RAM_BASE, SMALL_RAM, UART0, WFI

DATA = RAM_BASE + 0x2000

# Timer interrupts every 40 ticks wake a WFI loop that counts them in RAM, prints a letter
# per round and does some busy work, so the host's slicing, the translator and the
# virtual clock's warps all take part; it passes after 12 rounds.
TIMER_PROGRAM = """
    .equ UART0, 0x10000000
    .equ MTIMECMP, 0x02004000
    .equ MTIME, 0x0200bff8
    .equ FINISHER, 0x100000
    .equ DATA, 0x80002000
_start:
    la      t0, handler
    csrw    mtvec, t0
    li      s0, MTIME
    li      s1, MTIMECMP
    li      s2, UART0
    li      s3, DATA
    lw      t0, 0(s0)
    addi    t0, t0, 40
    sw      zero, 4(s1)
    sw      t0, 0(s1)
    li      t0, 0x80
    csrw    mie, t0
    csrsi   mstatus, 8
loop:
    lw      t1, 0(s3)
    sw      t1, 4(s3)
    addi    t2, t1, 'a'
    sb      t2, 0(s2)
    li      t5, 25
busy:
    addi    t5, t5, -1
    sw      t5, 8(s3)
    bnez    t5, busy
    wfi
    li      t2, 12
    blt     t1, t2, loop
    li      t0, FINISHER
    li      t1, 0x5555
    sw      t1, 0(t0)
1:  j       1b
handler:
    lw      t3, 0(s3)
    addi    t3, t3, 1
    sw      t3, 0(s3)
    lw      t4, 0(s1)
    addi    t4, t4, 40
    sw      t4, 0(s1)
    mret
"""
PROGRAM_IMAGE = assemble(TIMER_PROGRAM, base=RAM_BASE)
PROGRAM_BUDGET = 5_000


def timer_machine(**kwargs: int) -> Machine:
    m = Machine(MachineConfig(ram_size=SMALL_RAM), **kwargs)
    m.load_image(RAM_BASE, PROGRAM_IMAGE)
    m.cpu.pc = RAM_BASE
    return m


def ran_machine(budget: int = PROGRAM_BUDGET, **kwargs: int) -> Machine:
    m = timer_machine(**kwargs)
    m.run(budget)
    return m


# -- equal machines, equal digests ---------------------------------------------------------------


def test_two_runs_of_the_same_program_have_equal_digests_and_no_diff():
    a, b = ran_machine(), ran_machine()
    assert a.finisher_code == 0 and a.console_output() == b"abcdefghijklm"
    assert digest(a) == digest(b)
    assert len(digest(a)) == vd.DIGEST_SIZE
    assert diff(a, b) == []


def test_the_digest_is_the_combination_of_its_components():
    m = ran_machine()
    components = component_digests(m)
    assert {"cpu", "clock", "rom", "finisher", "clint", "uart0"} <= components.keys()
    assert vd.ram_page_name(DATA >> 12) in components
    assert digest(m) == vd.combine(components) == digest(m, cached=False)


def test_every_intermediate_point_of_a_run_digests_the_same_however_it_was_reached():
    whole = timer_machine()
    pieces = timer_machine(host_seed=99)
    for point in (1, 50, 51, 200, 333, 600):
        whole.run(point - whole.cpu.icount)
        while pieces.cpu.icount < point:
            pieces.run(min(7, point - pieces.cpu.icount))
        assert digest(whole) == digest(pieces), (point, diff(whole, pieces))


# -- host-side state is not guest state ------------------------------------------------------------


def test_other_host_seeds_translation_and_single_stepping_reach_the_same_digest():
    reference = digest(ran_machine())
    assert digest(ran_machine(host_seed=12345)) == reference
    assert digest(ran_machine(host_seed=(1 << 64) - 1)) == reference
    assert digest(ran_machine(hot_block_entries=1)) == reference
    stepped = timer_machine()
    stepped.run(PROGRAM_BUDGET, single_step=True)
    assert digest(stepped) == reference


def test_console_caches_heat_host_time_and_breakpoints_do_not_change_the_digest():
    m = ran_machine(hot_block_entries=1)
    before = digest(m)
    m.console += b"more output"
    m._regions.clear()
    m._steps.clear()
    m._heat.clear()
    m._page_entries.clear()
    m.host_time.advance(10**12)
    m.breakpoints = frozenset({RAM_BASE})
    m.finisher_code = 7
    assert digest(m) == before


def test_run_loop_bookkeeping_in_the_cpu_does_not_change_the_digest():
    m = ran_machine()
    before = digest(m)
    m.cpu.irq_pending = not m.cpu.irq_pending
    m.cpu.leave_block = True
    m.cpu.fault_loop = True
    m.cpu.last_trap_target = 0x1234
    m.cpu.last_trap_retired = 99
    assert digest(m) == before


def test_the_cpu_fields_digested_are_every_register_and_csr_backing_field():
    assert set(vd.digested_cpu_fields()) == {
        "x", "pc", "icount", "nonretired", "mstatus", "mie", "mip", "mtvec", "mscratch",
        "mepc", "mcause", "mtval", "mcycle_delta", "minstret_delta", "halted",
    }  # fmt: skip


def test_host_paced_timers_and_plain_bottom_halves_are_not_digested():
    m = ran_machine()
    before = digest(m)
    device = m.devices["uart0"]
    device.realtime = m.new_timer(ClockKind.REALTIME, lambda: None)  # type: ignore[attr-defined]
    device.hostclock = m.new_timer(ClockKind.HOST, lambda: None)  # type: ignore[attr-defined]
    device.external = m.new_timer(ClockKind.VIRTUAL, lambda: None, external=True)  # type: ignore[attr-defined]
    device.plain = m.new_bottom_half(lambda: None, replay=False)  # type: ignore[attr-defined]
    with_timers = digest(m)
    assert with_timers != before  # the timers exist (their clock kinds are part of the state)
    device.realtime.mod(10**9)  # type: ignore[attr-defined]
    device.hostclock.mod(10**18)  # type: ignore[attr-defined]
    device.external.mod(12345)  # type: ignore[attr-defined]
    device.plain.schedule()  # type: ignore[attr-defined]
    assert digest(m) == with_timers


def test_a_queued_replay_bottom_half_is_guest_state():
    a, b = ran_machine(), ran_machine()
    for m in (a, b):
        m.devices["uart0"].bh = m.new_bottom_half(lambda: None, replay=True)  # type: ignore[attr-defined]
    b.devices["uart0"].bh.schedule()  # type: ignore[attr-defined]
    assert [d.path for d in diff(a, b)] == ["uart0.bh.scheduled", "uart0.bh.scheduled_icount"]


# -- any guest change shows, and diff names exactly it -------------------------------------------


Change = tuple[str, Callable[[Machine], object], Callable[[Machine], None]]


def _cpu(m: Machine) -> object:
    return m.cpu


def _clint(m: Machine) -> object:
    return m.devices["clint"]


def attr_change(
    path: str, owner: Callable[[Machine], object], new: Callable[[object], object]
) -> Change:
    """(path, how to read the field, how to change it) for the attribute `path` ends with."""
    attr = path.rsplit(".", 1)[1]

    def read(m: Machine) -> object:
        return getattr(owner(m), attr)

    def change(m: Machine) -> None:
        setattr(owner(m), attr, new(read(m)))

    return path, read, change


def uart_write(register: str, offset: int, value: int) -> Change:
    """A UART register written as the guest writes it, through the bus."""

    def read(m: Machine) -> object:
        return getattr(m.devices["uart0"], register)

    def change(m: Machine) -> None:
        m.bus.write(UART0 + offset, 1, value)

    return f"uart0.{register}", read, change


FIELD_CHANGES: list[Change] = [
    ("cpu.x5", lambda m: m.cpu.x[5], lambda m: m.cpu.x.__setitem__(5, m.cpu.x[5] ^ 1)),
    ("cpu.x31", lambda m: m.cpu.x[31], lambda m: m.cpu.x.__setitem__(31, 0xFFFF_FFFF)),
    attr_change("cpu.pc", _cpu, lambda v: v + 4),
    attr_change("cpu.icount", _cpu, lambda v: v + 1),
    attr_change("cpu.nonretired", _cpu, lambda v: v + 3),
    attr_change("cpu.mstatus", _cpu, lambda v: v ^ MSTATUS_MPIE),
    attr_change("cpu.mie", _cpu, lambda v: v ^ 0x8),
    attr_change("cpu.mip", _cpu, lambda v: v ^ MIP_MSIP),
    attr_change("cpu.mtvec", _cpu, lambda v: v ^ 0x101),
    attr_change("cpu.mscratch", _cpu, lambda v: v ^ 1),
    attr_change("cpu.mepc", _cpu, lambda v: v ^ 0x400),
    attr_change("cpu.mcause", _cpu, lambda v: v ^ 2),
    attr_change("cpu.mtval", _cpu, lambda v: v ^ 0xDEAD),
    attr_change("cpu.mcycle_delta", _cpu, lambda v: v - 5),
    attr_change("cpu.minstret_delta", _cpu, lambda v: v + 5),
    attr_change("cpu.halted", _cpu, lambda v: not v),
    attr_change("clock.bias_ns", lambda m: m.vclock, lambda v: v + 1),
    uart_write("scr", 7, 0x5A),
    uart_write("mcr", 4, 0x0B),
    uart_write("ier", 1, 0x01),
    attr_change("clint.mtimecmp", _clint, lambda v: v + (1 << 40)),
    attr_change("clint.msip", _clint, lambda v: v ^ 1),
    attr_change("clint.time_delta", _clint, lambda v: v + 77),
    attr_change("clint.timer.deadline_ns", lambda m: m.devices["clint"].timer, lambda v: 10**15),
]


@pytest.mark.parametrize(
    ("path", "read", "change"), FIELD_CHANGES, ids=[c[0] for c in FIELD_CHANGES]
)
def test_changing_one_field_changes_the_digest_and_diff_names_exactly_that_field(
    path: str, read: Callable[[Machine], object], change: Callable[[Machine], None]
):
    a, b = ran_machine(), ran_machine()
    change(b)
    assert read(a) != read(b), "the change must change the field"
    assert digest(a) != digest(b)
    assert diff(a, b) == [Difference(path, read(a), read(b))]


def test_changing_one_ram_byte_names_its_page_and_the_byte():
    a, b = ran_machine(), ran_machine()
    address = RAM_BASE + 0x3456
    b.bus.write_bytes(address, b"\x2a")
    assert digest(a) != digest(b)
    assert diff(a, b) == [
        Difference(
            "ram[0x80003000..0x80003fff]",
            0,
            0x2A,
            "first difference at 0x80003456, 1 byte(s) differ",
        )
    ]
    assert str(diff(a, b)[0]).startswith("ram[0x80003000..0x80003fff] (first difference at")


def test_diff_shows_both_values_of_a_scalar_field():
    a, b = ran_machine(), ran_machine()
    b.cpu.x[5] = 0x1234
    assert str(diff(a, b)[0]) == f"cpu.x5: {a.cpu.x[5]:#x} != 0x1234"


# -- canonical RAM ------------------------------------------------------------------------------


def test_ram_written_then_zeroed_equals_ram_never_written():
    never = Machine(MachineConfig(ram_size=SMALL_RAM))
    written = Machine(MachineConfig(ram_size=SMALL_RAM))
    written.bus.write_bytes(RAM_BASE + 0x1000, b"\xff" * 5000)  # two pages
    assert digest(written) != digest(never)
    written.bus.write_bytes(RAM_BASE + 0x1000, bytes(5000))
    assert digest(written) == digest(never) == digest(written, cached=False)
    assert component_digests(written) == component_digests(never)
    assert not any(name.startswith("ram[") for name in component_digests(written))


def test_equal_pages_at_different_addresses_are_different_state():
    a = Machine(MachineConfig(ram_size=SMALL_RAM))
    b = Machine(MachineConfig(ram_size=SMALL_RAM))
    a.bus.write_bytes(RAM_BASE + 0x1000, b"x")
    b.bus.write_bytes(RAM_BASE + 0x2000, b"x")
    assert digest(a) != digest(b)
    pages = [vd.ram_page_name(address >> 12) for address in (RAM_BASE + 0x1000, RAM_BASE + 0x2000)]
    assert [d.path for d in diff(a, b)] == pages


def test_the_boot_rom_is_guest_state():
    a = Machine(MachineConfig(ram_size=SMALL_RAM))
    b = Machine(MachineConfig(ram_size=SMALL_RAM))
    a.boot(RAM_BASE)
    b.boot(RAM_BASE + 0x100)
    assert [d.path for d in diff(a, b)] == ["rom"]
    b.boot(RAM_BASE)
    assert digest(a) == digest(b)


# -- the page cache -------------------------------------------------------------------------------


CODE = [
    encode("sw", rs1=11, rs2=12),  # sw a2, 0(a1)
    encode("sb", rs1=13, rs2=12),  # sb a2, 0(a3)
    encode("sh", rs1=14, rs2=12),  # sh a2, 0(a4)
    WFI,
]
PAGES = SMALL_RAM >> 12
data_address = st.integers(RAM_BASE + 0x1000, RAM_BASE + SMALL_RAM - 4)  # page 0 holds CODE
store_value = st.sampled_from([0, 1, 0xFFFF_FFFF, 0x8000_0000])
ops = st.one_of(
    st.tuples(st.just("store"), data_address, data_address, data_address, store_value),
    st.tuples(st.just("write"), data_address, st.binary(min_size=1, max_size=6000)),
    st.tuples(st.just("zero"), st.integers(1, PAGES - 1)),
    st.tuples(st.just("digest")),
    st.tuples(st.just("take")),
)


def _store_machine() -> Machine:
    m = Machine(MachineConfig(ram_size=SMALL_RAM), hot_block_entries=1)
    m.bus.write_bytes(RAM_BASE, b"".join(w.to_bytes(4, "little") for w in CODE))
    return m


def _guest_store(m: Machine, word_at: int, byte_at: int, half_at: int, value: int) -> None:
    """Run CODE (translated on its first run, so later stores take the fast path on pages
    already dirty) with its three stores aimed at the given addresses."""
    m.cpu.x[11], m.cpu.x[13], m.cpu.x[14], m.cpu.x[12] = word_at & ~3, byte_at, half_at & ~1, value
    m.cpu.pc = RAM_BASE
    m.cpu.halted = False
    assert m.run(10).reason is StopReason.WFI_IDLE


def test_a_translated_store_to_an_already_dirty_page_is_seen_by_the_next_digest():
    m = _store_machine()
    page = DATA >> 12
    _guest_store(m, DATA, DATA + 1, DATA + 2, 0x11)
    assert m.bus.write_fast[page] == 1  # dirty: the translated code now stores directly
    _guest_store(m, DATA, DATA + 1, DATA + 2, 0x22)  # the fast path, not marked again
    assert digest(m) == digest(m, cached=False)
    assert m.bus.write_fast[page] == 0  # taken: the next store takes the slow path again
    _guest_store(m, DATA, DATA + 1, DATA + 2, 0x33)
    assert digest(m) == digest(m, cached=False)
    assert m.bus.read(DATA, 4) == 0x0033_3333


@given(st.lists(ops, max_size=25))
def test_the_cache_agrees_with_a_fresh_computation_after_any_writes(steps):
    m = _store_machine()
    digest(m)  # the cache exists from the start, so every step meets it
    for step in steps:
        if step[0] == "store":
            _guest_store(m, *step[1:])
        elif step[0] == "write":
            address = min(step[1], RAM_BASE + SMALL_RAM - len(step[2]))
            m.bus.write_bytes(address, step[2])
        elif step[0] == "zero":
            m.bus.write_bytes(RAM_BASE + (step[1] << 12), bytes(4096))
        elif step[0] == "take":
            m.bus.take_dirty_pages()  # another consumer: the cache must notice, not go stale
        else:
            assert digest(m) == digest(m, cached=False)
    assert component_digests(m) == component_digests(m, cached=False)
    assert digest(m) == digest(m, cached=False)


def test_a_digest_rehashes_only_the_pages_written_since_the_last_one(monkeypatch):
    m = Machine(MachineConfig(ram_size=1 << 20))
    for page in range(0, 256, 2):
        m.bus.write_bytes(RAM_BASE + page * 4096, b"\x01")
    hashed: list[bytes] = []
    real = vd._page_digest
    monkeypatch.setattr(vd, "_page_digest", lambda data: hashed.append(data) or real(data))
    digest(m)
    assert len(hashed) == 128  # the first digest hashes every non-zero page
    hashed.clear()
    digest(m)
    assert hashed == []
    for page in (3, 8, 200):
        m.bus.write_bytes(RAM_BASE + page * 4096 + 5, b"\x07")
    digest(m)
    assert len(hashed) == 3
    assert digest(m) == digest(m, cached=False)


def test_another_consumer_of_the_dirty_pages_costs_a_rescan_not_a_stale_digest():
    m = Machine(MachineConfig(ram_size=SMALL_RAM))
    digest(m)
    m.bus.write_bytes(DATA, b"x")
    m.bus.take_dirty_pages()  # e.g. an incremental snapshot: the digest never sees the page
    assert digest(m) == digest(m, cached=False)
    assert vd.ram_page_name(DATA >> 12) in component_digests(m)


def test_the_cache_does_not_keep_a_machine_alive():
    m = Machine(MachineConfig(ram_size=SMALL_RAM))
    digest(m)
    ref = weakref.ref(m)
    del m
    gc.collect()
    assert ref() is None


# -- walking device attributes ------------------------------------------------------------------


class Mode(enum.Enum):
    IDLE = "idle"
    BUSY = "busy"


class State:
    """A nested plain object, as a device might keep one per channel."""

    def __init__(self) -> None:
        self.mode = Mode.IDLE
        self.count = 0


@dataclasses.dataclass(slots=True)
class Slot:
    address: int = 0
    data: bytes = b""


class Probe(Device):
    """A device holding every kind of value the digest encodes, plus host-side attributes."""

    kind = "probe"
    size = 0x100
    HOST_SIDE = frozenset({"callback", "stats"})

    def __init__(self, host: DeviceHost, spec: DeviceSpec) -> None:
        super().__init__(host, spec)
        self.regs = [0, 1, 2, 3]
        self.pair = (5, None)
        self.fifo = bytearray(b"ab")
        self.queue: collections.deque[int] = collections.deque([1, 2], maxlen=8)
        self.table = {3: "three", 1: "one"}
        self.state = State()
        self.slot = Slot(4, b"\x00\x01")
        self.line = IrqLine(lambda level: None)
        self.mode = Mode.BUSY
        self.flag = True
        self.callback = lambda: None  # host-side: declared above
        self.stats = {"reads": 0.5}  # a float: would raise if it were not host-side


def probe_machine() -> Machine:
    probe = DeviceSpec(f"{__name__}:Probe", "probe", 0x1000_1000)
    return Machine(MachineConfig(ram_size=SMALL_RAM, devices=(FINISHER, CLINT, probe)))


def test_a_device_subclass_declaring_host_side_excludes_those_attributes():
    m = probe_machine()
    before = digest(m)
    probe = m.devices["probe"]
    probe.callback = print  # type: ignore[attr-defined]
    probe.stats["reads"] = 99.0  # type: ignore[attr-defined]
    assert digest(m) == before
    probe.flag = False  # type: ignore[attr-defined]
    assert digest(m) != before


def test_nested_values_are_encoded_canonically_whatever_their_history():
    a, b = probe_machine(), probe_machine()
    pa, pb = a.devices["probe"], b.devices["probe"]
    pb.table = {1: "one", 3: "three"}  # type: ignore[attr-defined]  # another insertion order
    pb.fifo = b"ab"  # type: ignore[attr-defined]  # bytes where a has a bytearray
    pb.regs = (0, 1, 2, 3)  # type: ignore[attr-defined]  # a tuple where a has a list
    pb.slot = Slot(4, bytearray(b"\x00\x01"))  # type: ignore[attr-defined]
    assert digest(a) == digest(b)
    assert pa.regs != pb.regs  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("change", "path"),
    [
        (lambda p: p.regs.__setitem__(2, 9), "probe.regs[2]"),
        (lambda p: p.regs.append(4), "probe.regs"),  # the length shows at the list's own path
        (lambda p: p.table.__setitem__(3, "drei"), "probe.table[3]"),
        (lambda p: setattr(p.state, "mode", Mode.BUSY), "probe.state.mode"),
        (lambda p: setattr(p.slot, "address", 8), "probe.slot.address"),
        (lambda p: p.line.raise_(), "probe.line.level"),
        (lambda p: p.queue.append(3), "probe.queue"),
        (lambda p: setattr(p, "pair", (5, 0)), "probe.pair[1]"),
        (lambda p: setattr(p, "flag", 1), "probe.flag"),  # 1 == True, but not the same state
    ],
)
def test_diff_names_the_nested_field_that_differs(change, path):
    a, b = probe_machine(), probe_machine()
    change(b.devices["probe"])
    assert diff(a, b)[0].path == path


@pytest.mark.parametrize(
    ("value", "why"),
    [
        (lambda: None, "function"),
        (1.5, "float"),
        ({1, 2}, "set"),
        (random.Random(0), "Random"),
        ([1, object()], "object"),
        ({(1, 2): 3}, "dict keys"),
        (type("Flags", (int,), {})(3), "Flags"),
    ],
    ids=["function", "float", "set", "random", "object-in-list", "tuple-key", "int-subclass"],
)
def test_an_attribute_of_unknown_type_raises_naming_the_device_and_attribute(value, why):
    m = probe_machine()
    m.devices["probe"].odd = value  # type: ignore[attr-defined]
    with pytest.raises(DigestError, match=r"probe\.odd") as raised:
        digest(m)
    assert why in str(raised.value)
    assert "Probe.HOST_SIDE" in str(raised.value)


def test_a_reference_to_another_device_raises():
    m = probe_machine()
    m.devices["probe"].peer = m.devices["clint"]  # type: ignore[attr-defined]
    with pytest.raises(DigestError, match=r"probe\.peer: it refers to device 'clint'"):
        digest(m)


def test_a_reference_to_the_machine_raises():
    m = probe_machine()
    m.devices["probe"].machine = m  # type: ignore[attr-defined]
    with pytest.raises(DigestError, match=r"probe\.machine: a Machine is machine infrastructure"):
        digest(m)


def test_a_value_that_contains_itself_raises():
    m = probe_machine()
    regs = m.devices["probe"].regs  # type: ignore[attr-defined]
    regs.append(regs)
    with pytest.raises(DigestError, match=r"probe\.regs\[4\]: it refers back"):
        digest(m)


def test_every_device_of_the_default_machine_is_a_component():
    m = Machine()
    assert set(m.devices) <= component_digests(m).keys()


# -- the component memo: remembered digests never stand in for changed state ----------------------


def _fresh_component_digests(m: Machine) -> dict[str, bytes]:
    """Every non-memory component's digest hashed from scratch, the plain way (the text
    `_fields_digest` streams, built as one string), with no memo involved."""
    import hashlib

    return {
        name: hashlib.sha256(vd._DIGEST_VERSION + vd._fields_text(fields)).digest()
        for name, fields in vd._all_fields(m)
    }


def _memo_agrees(m: Machine) -> None:
    components = component_digests(m)
    fresh = _fresh_component_digests(m)
    assert {name: components[name] for name in fresh} == fresh
    assert digest(m) == vd.combine(components) == vd.sample_digests(m)[0]
    assert vd.sample_digests(m)[1] == components


probe_values = st.one_of(
    st.integers(-3, 3),
    st.booleans(),
    st.none(),
    st.sampled_from(["", "a", "1"]),
    st.binary(max_size=3),
    st.sampled_from(list(Mode)),
)
probe_steps = st.one_of(
    st.tuples(st.just("flag"), probe_values),  # rebind a scalar, across types (1 / True)
    st.tuples(st.just("reg"), st.integers(0, 3), st.one_of(st.integers(0, 2), st.booleans())),
    st.tuples(st.just("fifo"), st.integers(0, 1), st.integers(0, 255)),  # in place
    st.tuples(st.just("big"), st.integers(0, 4095), st.integers(0, 255)),  # in place, streamed
    st.tuples(st.just("state"), st.integers(0, 2)),  # a nested object's field
    st.tuples(st.just("queue"), st.integers(0, 9)),
    st.tuples(st.just("sample")),
)


@given(st.lists(probe_steps, max_size=30))
def test_memoised_component_digests_equal_fresh_ones_after_any_changes(steps):
    m = probe_machine()
    probe = m.devices["probe"]
    probe.big = bytearray(4096)  # type: ignore[attr-defined]  # above the streaming threshold
    _memo_agrees(m)
    for step in steps:
        if step[0] == "flag":
            probe.flag = step[1]  # type: ignore[attr-defined]
        elif step[0] == "reg":
            probe.regs[step[1]] = step[2]  # type: ignore[attr-defined]
        elif step[0] == "fifo":
            probe.fifo[step[1]] = step[2]  # type: ignore[attr-defined]
        elif step[0] == "big":
            probe.big[step[1]] = step[2]  # type: ignore[attr-defined]
        elif step[0] == "state":
            probe.state.count = step[1]  # type: ignore[attr-defined]
        elif step[0] == "queue":
            probe.queue.append(step[1])  # type: ignore[attr-defined]
        else:
            _memo_agrees(m)
    _memo_agrees(m)


def test_an_int_and_a_bool_of_equal_value_never_share_a_memoised_digest():
    m = probe_machine()
    probe = m.devices["probe"]
    probe.flag = 1  # type: ignore[attr-defined]
    as_int = component_digests(m)["probe"]
    probe.flag = True  # type: ignore[attr-defined]  # == 1, and hashes alike in the memo's key
    as_bool = component_digests(m)["probe"]
    probe.flag = 1  # type: ignore[attr-defined]
    assert component_digests(m)["probe"] == as_int != as_bool
    probe.regs[0] = False  # type: ignore[attr-defined]  # == 0, the value it had
    assert component_digests(m)["probe"] != as_int
    _memo_agrees(m)


def test_a_memoised_disk_image_is_rehashed_after_an_in_place_write(monkeypatch):
    from vm.devices import block
    from vm.devices.registry import BUILTIN_DEVICES

    monkeypatch.setitem(BUILTIN_DEVICES, block.KIND, block.BlockDevice)
    # The block device holds a 64 KiB disk image: a leaf above the streaming threshold.
    m = Machine(MachineConfig(ram_size=SMALL_RAM, devices=(block.default_spec(),)))
    disk = m.devices["block"].disk  # type: ignore[attr-defined]
    before = component_digests(m)["block"]
    assert component_digests(m)["block"] == before  # memoised
    disk[40_000] ^= 0xFF  # the way a WRITE request's DMA stores into the disk
    changed = component_digests(m)["block"]
    assert changed != before
    _memo_agrees(m)
    disk[40_000] ^= 0xFF
    assert component_digests(m)["block"] == before


def test_memoised_digests_follow_guest_stores_device_registers_and_snapshot_loads():
    from vm.snapshot import loadvm, savevm

    m = timer_machine()
    m.run(1_500)
    saved = savevm(m)
    at_save = component_digests(m)
    m.run(1_500)  # guest stores to RAM and to CLINT / UART registers, timer interrupts
    assert component_digests(m) != at_save
    _memo_agrees(m)
    m.bus.write(UART0 + 7, 1, 0x5A)  # a device register through the bus (the UART's SCR)
    _memo_agrees(m)
    loadvm(m, saved)
    assert component_digests(m) == at_save
    _memo_agrees(m)
    other = Machine(MachineConfig(ram_size=SMALL_RAM))
    loadvm(other, saved)
    assert component_digests(other) == at_save
