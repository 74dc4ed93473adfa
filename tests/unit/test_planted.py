"""Planted bugs (vm/planted.py): the registry is complete, and each bug really breaks its rule.

For every bug a small guest shows, deterministically, that the machine with the bug breaks
the rule it is planted for and the same machine without it does not: a recording that a
replay on another host does not reproduce (rules 1-3), a loadvm that does not restore the
saved machine (4, 5), a stop/cont that changes guest state (6), a device that sees another
icount than the instruction touching it (7).

Guests that wait for a rule-1/2 interrupt poll for it (mip.MEIP, IIR) rather than take it:
a replay takes an interrupt only where the log says, and lets host work run until the line
is up, so a guest that only takes the interrupt replays to the recorded state even with
the IRQ raised at a host-chosen point (`test_a_guest_that_only_takes_the_interrupt_...`).
"""

from __future__ import annotations

import dataclasses
import re

import pytest

from vm import Machine, MachineConfig, ReplayMode, StopReason
from vm.asm import assemble
from vm.backends import Stimulus
from vm.config import DEFAULT_DEVICES, ConfigError, DeviceSpec, config_hash
from vm.devices import Device, DeviceHost, block, entropy, nic
from vm.devices.registry import BUILTIN_DEVICES, device_class
from vm.devices.uart import Uart16550
from vm.digest import diff, digest
from vm.hostmodel import HostProfile
from vm.loader import load_program
from vm.planted import PLANTED_BUGS, REPLAY_RULES, PlantedBug, planted_variant
from vm.replay import ReplayError
from vm.snapshot import loadvm, savevm, section_order
from vm.vmstate import VMStateDescription

PINNED_NAMES = {
    "uart-rx-timeout-realtime": 1,
    "nic-irq-external-timer": 1,
    "block-plain-bh": 2,
    "rtc-unlogged-clock": 3,
    "entropy-unlogged": 3,
    "clint-unsaved-timer": 4,
    "uart-post-load-irq": 5,
    "rtc-runstate-write": 6,
    "stale-io-icount": 7,
}

FINISHER = 0x0010_0000
RTC = 0x0010_1000
MTIMECMP = 0x0200_4000
MTIME = 0x0200_BFF8
PLIC_CLAIM = 0x0C20_0004
UART0 = 0x1000_0000
UART_IRQ = 10
PROBE = 0x1000_4000
BUFFER = 0x8000_8000  # DMA buffers and the NIC's ring, well past the guests' code

PASS = f"""
    li   t0, {FINISHER:#x}
    li   t1, 0x5555
    sw   t1, 0(t0)
9:  j    9b
"""
POLL_MEIP = """
    li   s0, 0
1:  addi s0, s0, 1             # s0 counts the polls: when MEIP rose
    csrr t0, mip
    srli t0, t0, 11
    andi t0, t0, 1
    beqz t0, 1b
"""


def plic_enable(source: int) -> str:
    """Priority 1 and the M context's enable for `source` (MEIP follows its pending bit)."""
    return f"""
    li   t0, {0x0C00_0000 + 4 * source:#x}
    li   t1, 1
    sw   t1, 0(t0)
    li   t0, 0x0c002000
    li   t1, {1 << source:#x}
    sw   t1, 0(t0)
    """


def bugged(config: MachineConfig, name: str) -> MachineConfig:
    return dataclasses.replace(config, planted_bugs=(name,))


def boot(config: MachineConfig, image: bytes, **kw: object) -> Machine:
    m = Machine(config, **kw)  # type: ignore[arg-type]
    load_program(m, image)
    return m


@dataclasses.dataclass(frozen=True)
class Guest:
    """A guest, the machine it runs on, and the host input it gets."""

    config: MachineConfig
    source: str
    budget: int = 2_000_000
    stimulus: tuple[Stimulus, ...] = ()
    profile: HostProfile | None = None

    def replays_faithfully(self, *, bug: str | None, record_seed: int, replay_seed: int) -> bool:
        """Record on a host with `record_seed`, replay on one with `replay_seed`: True if the
        replay ran to the recorded end and the recorded final state."""
        config = self.config if bug is None else bugged(self.config, bug)
        image = assemble(self.source)
        kw = {"stimulus": self.stimulus, "host_profile": self.profile}
        rec = boot(config, image, host_seed=record_seed, mode=ReplayMode.RECORD, **kw)
        assert rec.run(self.budget).reason is StopReason.FINISHER_PASS
        log = rec.recorded_log()
        rep = boot(
            config, image, host_seed=replay_seed, mode=ReplayMode.REPLAY, replay_log=log, **kw
        )
        try:
            rep.run(self.budget)
        except ReplayError:
            return False
        return rep.replay_at_end() and digest(rep) == digest(rec)


SEEDS = [(1, 2), (3, 4)]


def assert_only_the_bug_diverges(guest: Guest, bug: str) -> None:
    for record_seed, replay_seed in SEEDS:
        seeds = {"record_seed": record_seed, "replay_seed": replay_seed}
        assert guest.replays_faithfully(bug=None, **seeds)
        assert not guest.replays_faithfully(bug=bug, **seeds), (bug, record_seed, replay_seed)
    # A replay on the recording's own host reproduces even the bug: only another host
    # seed shows it (as in QEMU, where a replay on the same host at the same speed would).
    assert guest.replays_faithfully(bug=bug, record_seed=5, replay_seed=5)


# -- the registry ---------------------------------------------------------------------------------


def test_the_registry_holds_the_pinned_bugs_and_every_rule_has_one():
    assert {name: bug.rule for name, bug in PLANTED_BUGS.items()} == PINNED_NAMES
    assert {bug.rule for bug in PLANTED_BUGS.values()} == set(REPLAY_RULES) == set(range(1, 8))


def test_names_are_unique_kebab_case_and_match_their_entries():
    names = [bug.name for bug in PLANTED_BUGS.values()]
    assert names == list(PLANTED_BUGS) and len(set(names)) == len(names)
    for name in names:
        assert re.fullmatch(r"[a-z0-9]+(-[a-z0-9]+)*", name), name


@pytest.mark.parametrize("bug", list(PLANTED_BUGS.values()), ids=list(PLANTED_BUGS))
def test_each_variant_is_its_device_with_one_documented_mistake(bug: PlantedBug):
    assert bug.summary and "\n" not in bug.summary
    if bug.variant is None:
        assert bug.replaces is None and bug.switch is not None
        assert f"rule {bug.rule}" in (bug.switch.__doc__ or "")
        return
    real = BUILTIN_DEVICES[bug.replaces]  # type: ignore[index]
    assert issubclass(bug.variant, real) and bug.variant is not real
    # Not a built-in: the vmstate meta-tests, which walk BUILTIN_DEVICES, check real devices.
    assert bug.variant not in BUILTIN_DEVICES.values()
    assert f"(rule {bug.rule})" in (bug.variant.__doc__ or "")


def test_a_planted_bug_entry_is_validated():
    with pytest.raises(ValueError, match="kebab-case"):
        PlantedBug("Bad_Name", 1, "clint", "x", variant=device_class("clint"))
    with pytest.raises(ValueError, match="rule 8"):
        PlantedBug("bad", 8, "clint", "x", variant=device_class("clint"))
    with pytest.raises(ValueError, match="not both"):
        PlantedBug("bad", 1, None, "x")
    with pytest.raises(ValueError, match="kind"):
        PlantedBug("bad", 1, "plic", "x", variant=device_class("clint"))


def test_unknown_planted_bugs_are_rejected_with_the_known_names():
    with pytest.raises(ConfigError, match="unknown planted bugs") as info:
        MachineConfig(planted_bugs=("no-such-bug",))
    assert all(name in str(info.value) for name in PLANTED_BUGS)
    with pytest.raises(ConfigError, match="unknown planted bugs"):
        MachineConfig.from_dict({**MachineConfig().to_dict(), "planted_bugs": ["nope"]})


def test_a_bug_whose_device_the_configuration_lacks_is_rejected():
    with pytest.raises(ConfigError, match="'block' device"):
        MachineConfig(planted_bugs=("block-plain-bh",))


def test_switching_a_bug_on_changes_the_config_hash():
    base = MachineConfig()
    hashes = {config_hash(base)}
    for name in ("clint-unsaved-timer", "rtc-runstate-write", "stale-io-icount"):
        config = bugged(base, name)
        assert MachineConfig.from_dict(config.to_dict()) == config
        hashes.add(config_hash(config))
    assert len(hashes) == 4


def test_the_machine_builds_the_variant_only_when_its_bug_is_on():
    plain = Machine(MachineConfig())
    assert type(plain.devices["uart0"]) is Uart16550
    assert "io_icount" not in vars(plain)  # no machine-level switch: the exact code runs
    m = Machine(bugged(MachineConfig(), "uart-post-load-irq"))
    assert type(m.devices["uart0"]) is PLANTED_BUGS["uart-post-load-irq"].variant
    assert type(m.devices["clint"]) is BUILTIN_DEVICES["clint"]
    assert device_class("ns16550a", planted=("stale-io-icount",)) is Uart16550


def test_two_bugs_of_one_device_combine():
    names = ("uart-post-load-irq", "uart-rx-timeout-realtime")
    m = Machine(MachineConfig(planted_bugs=names))
    uart = m.devices["uart0"]
    for name in names:
        assert isinstance(uart, PLANTED_BUGS[name].variant)  # type: ignore[arg-type]
    assert planted_variant("ns16550a", names) is type(uart)  # one class per combination


# -- rule 1: timers that change guest state run on the VIRTUAL clock ------------------------------

# Loopback: the byte written to THR lands in the RX FIFO and arms the character timeout
# (divisor 1: 4 characters take 100200 ns, ~98 instructions at shift 10); the guest counts
# IIR polls until it shows the timeout (0x0C).
UART_TIMEOUT = Guest(
    MachineConfig(icount_shift=10),
    f"""
    li   s1, {UART0:#x}
    li   t0, 0x80
    sb   t0, 3(s1)             # DLAB
    li   t0, 1
    sb   t0, 0(s1)             # divisor 1
    sb   zero, 1(s1)
    li   t0, 3
    sb   t0, 3(s1)             # 8N1
    li   t0, 1
    sb   t0, 2(s1)             # FIFOs on
    li   t0, 0x18
    sb   t0, 4(s1)             # loopback, OUT2
    li   t0, 1
    sb   t0, 1(s1)             # IER.RDI
    li   t0, 65
    sb   t0, 0(s1)             # 'A' into the receiver
    li   s0, 0
1:  addi s0, s0, 1
    lbu  t0, 2(s1)             # IIR
    andi t0, t0, 15
    li   t1, 12
    bne  t0, t1, 1b
    {PASS}
    """,
)


def test_uart_rx_timeout_on_realtime_is_not_replayed():
    assert_only_the_bug_diverges(UART_TIMEOUT, "uart-rx-timeout-realtime")


def test_the_realtime_timeout_comes_after_a_host_chosen_number_of_polls():
    def polls(bug: tuple[str, ...], seed: int) -> int:
        config = dataclasses.replace(UART_TIMEOUT.config, planted_bugs=bug)
        m = boot(config, assemble(UART_TIMEOUT.source), host_seed=seed)
        assert m.run(UART_TIMEOUT.budget).reason is StopReason.FINISHER_PASS
        return m.cpu.x[8]

    assert polls((), 1) == polls((), 2)
    assert polls(("uart-rx-timeout-realtime",), 1) != polls(("uart-rx-timeout-realtime",), 2)


NIC_SPEC = DeviceSpec(nic.KIND, "nic0", nic.DEFAULT_BASE, irq=3, options=(("netdev", "none"),))
# One packet arrives from the host; the guest polls mip.MEIP (PLIC source 3) for its interrupt.
NIC_SETUP = f"""
    {plic_enable(3)}
    li   s1, {nic.DEFAULT_BASE:#x}
    li   t0, {BUFFER:#x}
    sw   t0, 0x20(s1)          # RX ring: one slot
    li   t0, 1
    sw   t0, 0x24(s1)
    sw   t0, 0x18(s1)          # INT_MASK: RX
    sw   t0, 0x10(s1)          # RX on
"""
NIC_GUEST = Guest(
    MachineConfig(devices=(*DEFAULT_DEVICES, NIC_SPEC)),
    NIC_SETUP + POLL_MEIP + PASS,
    stimulus=(Stimulus(20_000, "nic0", bytes(range(60))),),
)


def test_nic_irq_from_an_external_timer_is_not_replayed():
    assert_only_the_bug_diverges(NIC_GUEST, "nic-irq-external-timer")


# -- rule 2: bottom halves that change guest state are replay-scheduled ---------------------------

FAST_DISK = dataclasses.replace(
    HostProfile(), block_latency_ns_min=2_000, block_latency_ns_max=20_000
)
BLOCK_SETUP = f"""
    {plic_enable(2)}
    li   s1, {block.DEFAULT_BASE:#x}
    sw   zero, 0x08(s1)        # sector 0
    li   t0, {BUFFER:#x}
    sw   t0, 0x0c(s1)
    li   t0, 1
    sw   t0, 0x10(s1)          # one sector
    sw   t0, 0x14(s1)          # READ
"""
BLOCK_GUEST = Guest(
    MachineConfig(devices=(*DEFAULT_DEVICES, block.default_spec())),
    BLOCK_SETUP + POLL_MEIP + PASS,
    profile=FAST_DISK,
)


def test_block_completion_irq_from_a_plain_bottom_half_is_not_replayed():
    assert_only_the_bug_diverges(BLOCK_GUEST, "block-plain-bh")


# A guest that only takes the interrupt (the handler sets s2) and looks at nothing else.
TAKES_THE_INTERRUPT = f"""
    la   t0, handler
    csrw mtvec, t0
    li   t0, 0x800
    csrw mie, t0               # MEIE
    csrsi mstatus, 8
    {{setup}}
    li   s0, 0
1:  addi s0, s0, 1
    beqz s2, 1b
    {PASS}
handler:
    li   t0, {PLIC_CLAIM:#x}
    lw   t1, 0(t0)
    sw   t1, 0(t0)
    li   s2, 1
    csrw mie, zero
    mret
"""


@pytest.mark.parametrize(
    ("guest", "bug"),
    [(BLOCK_GUEST, "block-plain-bh"), (NIC_GUEST, "nic-irq-external-timer")],
    ids=["block-plain-bh", "nic-irq-external-timer"],
)
def test_a_guest_that_only_takes_the_interrupt_replays_even_with_the_bug(guest, bug):
    # The replay takes the interrupt where the log says and lets host work run until the
    # line is up: the bug is invisible to such a guest (the fuzzer must poll to see it).
    setup = BLOCK_SETUP if bug == "block-plain-bh" else NIC_SETUP
    takes = dataclasses.replace(guest, source=TAKES_THE_INTERRUPT.format(setup=setup))
    for record_seed, replay_seed in SEEDS:
        assert takes.replays_faithfully(bug=bug, record_seed=record_seed, replay_seed=replay_seed)


# -- rule 3: host input reaches the guest only through the log ------------------------------------

RTC_GUEST = Guest(
    MachineConfig(),
    f"""
    li   s1, {RTC:#x}
    lw   a0, 0(s1)             # TIME_LOW (latches TIME_HIGH)
    lw   a1, 4(s1)
    {PASS}
    """,
)


def test_an_rtc_reading_the_host_model_directly_is_not_replayed():
    assert_only_the_bug_diverges(RTC_GUEST, "rtc-unlogged-clock")


ENTROPY_GUEST = Guest(
    MachineConfig(devices=(*DEFAULT_DEVICES, entropy.default_spec())),
    f"""
    li   s1, {entropy.DEFAULT_BASE:#x}
    li   t0, 1
    sw   t0, 4(s1)             # enable
    lw   a0, 0xc(s1)           # two words of host entropy
    lw   a1, 0xc(s1)
    {PASS}
    """,
)


def test_entropy_read_from_the_host_model_directly_is_not_replayed():
    assert_only_the_bug_diverges(ENTROPY_GUEST, "entropy-unlogged")


# -- rule 4: loadvm restores every field savevm should have saved ---------------------------------

PERIOD_TICKS = 20  # 2 us: 2000 instructions at shift 0
TICKS = 6
PERIODIC_TIMER = assemble(
    f"""
    la   t0, handler
    csrw mtvec, t0
    li   s1, {MTIMECMP:#x}
    sw   zero, 4(s1)
    li   t0, {PERIOD_TICKS}
    sw   t0, 0(s1)             # the first tick
    li   t0, 0x80
    csrw mie, t0               # MTIE
    csrsi mstatus, 8
    li   s0, 0
1:  addi s0, s0, 1             # s0 counts loop turns: how long the ticks took
    j    1b
handler:                       # the periodic tick: mtimecmp += period
    lw   t0, 0(s1)
    addi t0, t0, {PERIOD_TICKS}
    sw   t0, 0(s1)
    addi s2, s2, 1
    li   t1, {TICKS}
    bne  s2, t1, 2f
    {PASS}
2:  mret
    """
)
SAVE_AT = 5_000  # after two ticks, in the middle of the third period


def periodic_round_trip(planted: tuple[str, ...]) -> tuple[Machine, Machine]:
    """The periodic-timer guest saved at SAVE_AT and loaded into a fresh machine: both
    machines, about to continue."""
    config = MachineConfig(planted_bugs=planted)
    original = boot(config, PERIODIC_TIMER)
    assert original.run(SAVE_AT).reason is StopReason.BUDGET
    assert original.cpu.x[18] == 2  # s2: two ticks so far
    loaded = Machine(config)
    loadvm(loaded, savevm(original))
    return original, loaded


def test_the_clint_with_unsaved_mtimecmp_does_not_load_what_it_saved():
    original, loaded = periodic_round_trip(())
    assert digest(loaded) == digest(original)
    original, loaded = periodic_round_trip(("clint-unsaved-timer",))
    assert [d.path for d in diff(original, loaded)] == ["clint.mtimecmp"]


def test_a_periodic_timer_after_loadvm_without_mtimecmp_ticks_at_once():
    for planted, same in (((), True), (("clint-unsaved-timer",), False)):
        original, loaded = periodic_round_trip(planted)
        for m in (original, loaded):
            assert m.run(100_000).reason is StopReason.FINISHER_PASS
        assert (digest(loaded) == digest(original)) is same
    # With the bug the ticks after the load's first come back to back (mtimecmp restarts
    # from 0): the last three ticks take one period instead of three.
    period_insns = PERIOD_TICKS * 100  # 100 ns a tick, 1 ns an instruction at shift 0
    assert original.cpu.icount - loaded.cpu.icount > 2 * period_insns - 100


# -- rule 5: post_load touches only its own device ------------------------------------------------

# IER.THRI raises the UART's line (THR is empty), pending PLIC source 10; the guest claims it
# without completing: the line is still high, the PLIC's pending bit clear.
CLAIMED_UART_IRQ = assemble(
    f"""
    {plic_enable(UART_IRQ)}
    li   s1, {UART0:#x}
    li   t0, 2
    sb   t0, 1(s1)             # IER.THRI
    li   t0, {PLIC_CLAIM:#x}
    lw   a0, 0(t0)             # claim: source 10
9:  j    9b
    """
)


def uart_round_trip(planted: tuple[str, ...], order_seed: int | None) -> tuple[Machine, Machine]:
    config = MachineConfig(planted_bugs=planted)
    original = boot(config, CLAIMED_UART_IRQ)
    original.run(40)
    assert original.cpu.x[10] == UART_IRQ and original.devices["uart0"].irq.level  # type: ignore[attr-defined]
    loaded = Machine(config)
    loadvm(loaded, savevm(original), section_order_seed=order_seed)
    return original, loaded


def _order_seed(*, plic_first: bool) -> int:
    names = [spec.name for spec in DEFAULT_DEVICES]
    return next(
        seed
        for seed in range(100)
        if (section_order(names, seed).index("plic") < section_order(names, seed).index("uart0"))
        is plic_first
    )


@pytest.mark.parametrize(
    "order_seed", [None, _order_seed(plic_first=True), _order_seed(plic_first=False)]
)
def test_a_uart_post_load_that_leaves_the_plic_alone_loads_what_was_saved(order_seed):
    original, loaded = uart_round_trip((), order_seed)
    assert digest(loaded) == digest(original)


def test_a_uart_post_load_that_drives_its_line_pends_the_plic_again():
    original, loaded = uart_round_trip(("uart-post-load-irq",), _order_seed(plic_first=True))
    assert [d.path for d in diff(original, loaded)] == ["plic.pending[0]"]
    # Whether it shows depends on the load order: the PLIC loading last overwrites the push.
    original, loaded = uart_round_trip(("uart-post-load-irq",), _order_seed(plic_first=False))
    assert digest(loaded) == digest(original)


# -- rule 6: stopping and continuing the VM do not change guest state -----------------------------

# An alarm in the past (ALARM_HIGH 0) raises the RTC's interrupt status at once.
RTC_ALARM_PENDING = assemble(
    f"""
    li   s1, {RTC:#x}
    li   t0, 1
    sw   t0, 0x10(s1)          # IRQ_ENABLED
    sw   zero, 0x0c(s1)        # ALARM_HIGH
    sw   zero, 0x08(s1)        # ALARM_LOW: long past, so the alarm fires now
9:  j    9b
    """
)


@pytest.mark.parametrize("mode", [ReplayMode.NONE, ReplayMode.RECORD])
def test_an_rtc_that_acknowledges_its_alarm_on_stop_changes_guest_state(mode):
    for planted, same in (((), True), (("rtc-runstate-write",), False)):
        m = boot(MachineConfig(planted_bugs=planted), RTC_ALARM_PENDING, mode=mode)
        m.run(50)
        assert m.devices["rtc"].irq_pending  # type: ignore[attr-defined]
        before = digest(m)
        m.stop()
        m.pass_host_time()
        m.cont()
        assert (digest(m) == before) is same, planted


# -- rule 7: a device observes the exact icount of the instruction that touches it ----------------


class IcountProbe(Device):
    """A test device: a read returns the icount it observes (and remembers it)."""

    kind = "icount_probe"
    size = 0x100
    access_sizes = frozenset({4})
    VMSTATE = VMStateDescription("icount_probe", version=1, minimum_version=1, fields=[])
    HOST_SIDE = frozenset({"seen"})

    def __init__(self, host: DeviceHost, spec: DeviceSpec) -> None:
        super().__init__(host, spec)
        self.seen: list[int] = []

    def read(self, offset: int, size: int) -> int:
        del offset, size
        self.seen.append(self.host.io_icount())
        return self.seen[-1] & 0xFFFF_FFFF


PROBE_CONFIG = MachineConfig(
    devices=(*DEFAULT_DEVICES, DeviceSpec(f"{__name__}:IcountProbe", "probe", PROBE))
)
PROBES = 300
# Each turn reads the probe and compares what it returned with the count the guest keeps
# itself from the first read (7 instructions a turn, branch-free): s3 counts the misses.
PROBE_LOOP = assemble(
    f"""
    li   s1, {PROBE:#x}
    li   s0, {PROBES}
    lw   s2, 0(s1)             # the first read: the icount of this very lw
    addi s2, s2, 2             # the loop's lw comes two instructions later
1:  lw   t0, 0(s1)
    sub  t1, t0, s2
    snez t1, t1
    add  s3, s3, t1
    addi s2, s2, 7
    addi s0, s0, -1
    bnez s0, 1b
    {PASS}
    """
)


def probe_run(planted: tuple[str, ...], *, seed: int, translate: bool) -> Machine:
    config = dataclasses.replace(PROBE_CONFIG, planted_bugs=planted)
    m = boot(config, PROBE_LOOP, host_seed=seed, hot_block_entries=1 if translate else 24)
    assert m.run(100_000).reason is StopReason.FINISHER_PASS
    return m


@pytest.mark.parametrize("translate", [False, True], ids=["interpreted", "translated"])
def test_with_a_stale_io_icount_devices_see_the_slice_start_not_the_instruction(translate):
    exact = probe_run((), seed=1, translate=translate)
    seen = exact.devices["probe"].seen  # type: ignore[attr-defined]
    assert len(seen) == PROBES + 1 and exact.cpu.x[19] == 0  # s3: every read exact
    assert seen == probe_run((), seed=2, translate=translate).devices["probe"].seen  # type: ignore[attr-defined]
    # Host 3 ends its first slices after 1007 and 444 instructions, host 4 after 8155: the
    # whole program (2100 instructions) runs in one slice there.
    stale = [probe_run(("stale-io-icount",), seed=s, translate=translate) for s in (3, 4)]
    for m in stale:
        observed = m.devices["probe"].seen  # type: ignore[attr-defined]
        assert m.cpu.x[19] > 0  # the guest caught its device seeing another icount
        assert all(o <= e for o, e in zip(observed, seen, strict=True))
        assert observed != seen
    # Where slices start is the host's choice: another host, other icounts.
    assert stale[0].devices["probe"].seen != stale[1].devices["probe"].seen  # type: ignore[attr-defined]


MTIME_GUEST = Guest(
    MachineConfig(icount_shift=7),  # 128 ns an instruction: mtime moves on every one
    f"""
    li   s1, {MTIME:#x}
    li   s0, 20000             # 80000 instructions: several of the hosts' slices
1:  lw   t0, 0(s1)
    add  s2, s2, t0            # a sum over mtime reads
    addi s0, s0, -1
    bnez s0, 1b
    {PASS}
    """,
)


def test_a_stale_io_icount_is_not_replayed():
    assert_only_the_bug_diverges(MTIME_GUEST, "stale-io-icount")
