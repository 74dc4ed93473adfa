"""detfuzz's machine: an RV32IM machine-mode hart in icount mode on QEMU's `virt` map."""

from vm.machine import Machine, MachineConfig
from vm.replay import ReplayMode
from vm.stop import RunResult, StopReason

__all__ = ["Machine", "MachineConfig", "ReplayMode", "RunResult", "StopReason"]
