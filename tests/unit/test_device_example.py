"""The example device in vm/DEVICES.md works as the page says (the page stays true)."""

from __future__ import annotations

import re
import sys
import types
from pathlib import Path

import pytest

from vm import Machine, MachineConfig, StopReason
from vm.asm import assemble
from vm.config import DEFAULT_DEVICES, DeviceSpec
from vm.digest import digest
from vm.memory import RAM_BASE
from vm.snapshot import loadvm, savevm

DOC = Path(__file__).resolve().parents[2] / "vm" / "DEVICES.md"
MODULE = "detfuzz_devices_md_example"


@pytest.fixture(scope="module", autouse=True)
def example_module():
    text = DOC.read_text()
    blocks = re.findall(r"```python\n(.*?)```", text, re.S)
    source = next(block for block in blocks if "class Countdown" in block)
    module = types.ModuleType(MODULE)
    exec(compile(source, str(DOC), "exec"), module.__dict__)
    sys.modules[MODULE] = module
    yield module
    del sys.modules[MODULE]


SPEC = DeviceSpec(f"{MODULE}:Countdown", "countdown0", 0x1000_4000, irq=4)

GUEST = """
    li   t0, 0x0c000010       # PLIC priority of source 4
    li   t1, 1
    sw   t1, 0(t0)
    li   t0, 0x0c002000       # enable source 4 for the M context
    li   t1, 0x10
    sw   t1, 0(t0)
    li   t0, 0x800            # MEIE; MIE stays off, so WFI just wakes
    csrw mie, t0
    li   t0, 0x10004000
    li   t1, 5                # 5 us of guest time
    sw   t1, 0(t0)
    li   t1, 1
    sw   t1, 4(t0)            # start
    wfi
    lw   a0, 8(t0)            # STATUS after the wake-up
    li   t0, 0x0200bff8
    lw   a1, 0(t0)            # mtime then
    csrw mie, zero
    wfi
"""


def machine(seed: int = 0) -> Machine:
    m = Machine(MachineConfig(devices=(*DEFAULT_DEVICES, SPEC)), host_seed=seed)
    m.bus.write_bytes(RAM_BASE, assemble(GUEST))
    m.cpu.pc = RAM_BASE
    return m


def test_the_example_device_wakes_the_guest_at_the_programmed_guest_time():
    results = set()
    for seed in range(3):
        m = machine(seed)
        assert m.run(1000).reason is StopReason.WFI_IDLE
        results.add((m.cpu.x[10], m.cpu.x[11], digest(m)))
    assert len(results) == 1
    status, mtime, _ = results.pop()
    assert status == 1 and mtime >= 50  # 5000 ns at 10 MHz


def test_the_example_device_survives_a_snapshot_with_its_timer_pending():
    original = machine()
    original.run(15)  # armed, not yet expired
    assert original.devices["countdown0"].timer.pending
    copy = Machine(MachineConfig(devices=(*DEFAULT_DEVICES, SPEC)))
    loadvm(copy, savevm(original))
    assert digest(copy) == digest(original)
    for m in (original, copy):
        m.run(1000)
    assert digest(copy) == digest(original)
