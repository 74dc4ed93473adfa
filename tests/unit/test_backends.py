"""Host input: stimulus arrives into backends on the host side and reaches a device only at
the async point, through the choke point."""

from __future__ import annotations

from vm import Machine, MachineConfig, StopReason
from vm.asm import assemble
from vm.backends import CharBackend, NetBackend, Stimulus
from vm.config import DEFAULT_DEVICES, DeviceSpec
from vm.csr import MIP_MEIP
from vm.devices import Device
from vm.memory import RAM_BASE
from vm.nondet import Nondet, NondetKind

PROBE_BASE = 0x1000_3000


class ByteSink(Device):
    """A tiny receiver: a 4-byte FIFO fed by char backend "probe"; reading offset 0 pops a
    byte (0x100 when empty); MEIP is high while the FIFO holds data."""

    kind = "byte-sink"
    size = 0x100

    def __init__(self, host, spec):
        super().__init__(host, spec)
        self.fifo = bytearray()
        backend = host.char_backend("probe")
        backend.connect(can_receive=lambda: 4 - len(self.fifo), receive=self._receive)

    def _receive(self, data: bytes) -> None:
        self.fifo += data
        self.host.set_cpu_irq(MIP_MEIP, level=True)

    def read(self, offset, size):
        if not self.fifo:
            return 0x100
        value = self.fifo.pop(0)
        self.host.set_cpu_irq(MIP_MEIP, level=bool(self.fifo))
        return value


SINK = DeviceSpec(f"{__name__}:ByteSink", "sink", PROBE_BASE)

# Sleep until the FIFO has data, drain it into a buffer at 0x80001000, until 10 bytes came.
DRAIN = f"""
    li   s0, {PROBE_BASE:#x}
    li   s1, 0x80001000
    li   s3, 0x8000100a
    li   t0, 0x800
    csrw mie, t0              # MEIE only wakes WFI: MIE stays off
wait:
    wfi
drain:
    lw   t1, 0(s0)
    li   t2, 0x100
    beq  t1, t2, next
    sb   t1, 0(s1)
    addi s1, s1, 1
    j    drain
next:
    bne  s1, s3, wait
    wfi
"""


def machine(stimulus, seed=0):
    m = Machine(MachineConfig(devices=(*DEFAULT_DEVICES, SINK)), host_seed=seed, stimulus=stimulus)
    m.bus.write_bytes(RAM_BASE, assemble(DRAIN))
    m.cpu.pc = RAM_BASE
    return m


STIMULUS = (
    Stimulus(1_000_000, "probe", b"hello"),
    Stimulus(9_000_000, "probe", b"world"),
)


def test_stimulus_reaches_a_sleeping_guest_through_the_backend_and_choke_point():
    m = machine(STIMULUS)
    result = m.run(100_000)
    assert result.reason is StopReason.WFI_IDLE
    assert m.bus.read_bytes(0x8000_1000, 10) == b"helloworld"
    assert m.nondet.counts[NondetKind.CHAR_READ] >= 3  # a 4-byte FIFO: several deliveries
    assert m.host_time.realtime_ns >= 9_000_000  # the host's time passed while idle


def test_the_guest_sees_the_same_bytes_whatever_the_host_seed():
    outputs = set()
    for seed in range(4):
        m = machine(STIMULUS, seed)
        m.run(100_000)
        outputs.add(m.bus.read_bytes(0x8000_1000, 10))
    assert outputs == {b"helloworld"}


def test_a_channel_nobody_listens_on_drops_its_input():
    m = machine((Stimulus(10, "nobody", b"x"), *STIMULUS))
    m.run(100_000)
    assert "nobody" not in m.backends
    assert m.bus.read_bytes(0x8000_1000, 10) == b"helloworld"


def test_a_replay_port_supplies_the_bytes_instead_of_the_host():
    m = machine(STIMULUS)

    class Replay:
        def value(self, kind, channel, produce):
            produce()  # the live host input is consumed and dropped
            return b"XY"

    m.nondet.port = Replay()
    m.run(100_000)
    assert m.bus.read_bytes(0x8000_1000, 4) == b"XYXY"


def test_a_net_backend_delivers_whole_packets_in_order():
    backend = NetBackend("nic0", 0)
    got = []
    backend.connect(can_receive=lambda: 1, receive=got.append)
    backend.arrive(b"one")
    backend.arrive(b"two")
    nondet = Nondet()
    assert backend.deliver(nondet) and backend.deliver(nondet) and not backend.deliver(nondet)
    assert got == [b"one", b"two"] and nondet.counts[NondetKind.NET] == 2


def test_a_char_backend_without_room_keeps_its_input():
    backend = CharBackend("c", 0)
    backend.connect(can_receive=lambda: 0, receive=lambda data: None)
    backend.arrive(b"abc")
    assert not backend.deliver(Nondet()) and backend.has_input()
