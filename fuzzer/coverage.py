"""Feature coverage: what a run reached, named for a person and for Hypothesis to steer by.

The target counts raw facts (vm.trace.CoverageCounter: device accesses by offset, small
values read from registers, interrupts by cause, writes into code, stops and snapshots);
this module names them: every device register read or written (`uart0.lsr.read`), device
states seen through their status registers (`uart0.rx-fifo.overrun`, `uart0.iir.rx-timeout`,
`plic.claimed.10`), interrupts per source (`irq.timer`), DMA or stores into code,
snapshots taken with a virtual timer armed, stops while the hart waits in WFI. A campaign
reports which features it reached and which of the known ones it never did, so "found
nothing" can be told apart from "never got there".
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from typing import Final

from vm.config import DeviceSpec, MachineConfig
from vm.devices import plic, uart

# Register names by device kind and offset (reads, writes): what the feature names say.
_UART_REGISTERS: Final = {
    0x0: ("rbr", "thr"),
    0x1: ("ier", "ier"),
    0x2: ("iir", "fcr"),
    0x3: ("lcr", "lcr"),
    0x4: ("mcr", "mcr"),
    0x5: ("lsr", "lsr"),
    0x6: ("msr", "msr"),
    0x7: ("scr", "scr"),
}
_IRQ_NAMES: Final = {3: "software", 7: "timer", 11: "external"}


def _uart_values(offset: int, value: int) -> Iterable[str]:
    """What a UART register's value says about the device's state."""
    if offset == uart.IIR_FCR:
        kind = value & 0x0F
        yield {
            uart.IIR_NO_INT: "iir.none",
            uart.IIR_THRI: "iir.thr-empty",
            uart.IIR_RDI: "iir.rx-data",
            uart.IIR_RLSI: "iir.line-status",
            uart.IIR_CTI: "iir.rx-timeout",
        }.get(kind, f"iir.{kind:#x}")
        if value & uart.IIR_FE:
            yield "fifo-enabled"
    elif offset == uart.LSR:
        if value & 0x01:
            yield "rx-fifo.data"
        else:
            yield "rx-fifo.empty"
        if value & 0x02:
            yield "rx-fifo.overrun"  # a byte arrived with the FIFO full
        if not value & 0x20:
            yield "tx.busy"


def _plic_values(offset: int, value: int) -> Iterable[str]:
    if offset == plic.CLAIM_COMPLETE:
        yield "claimed.none" if value == 0 else f"claimed.{value}"


# Device kind -> (register names for MMIO counts, decoder of small read values).
_DECODERS: Final[
    dict[str, tuple[Mapping[int, tuple[str, str]], Callable[[int, int], Iterable[str]]]]
] = {
    "ns16550a": (_UART_REGISTERS, _uart_values),
    "plic": ({}, _plic_values),
}


def features(raw: Mapping[str, int] | None, config: MachineConfig) -> dict[str, int]:
    """The named features of one run's raw counters."""
    out: Counter[str] = Counter()
    if not raw:
        return {}
    kinds = {spec.name: spec for spec in config.devices}
    for key, count in raw.items():
        parts = key.split("/")
        if parts[0] == "mmio" and len(parts) == 4:
            out[_register_feature(kinds.get(parts[1]), parts[1], parts[2], int(parts[3], 16))] += (
                count
            )
        elif parts[0] == "value" and len(parts) == 4:
            spec = kinds.get(parts[1])
            decode = _DECODERS.get(spec.kind) if spec is not None else None
            if decode is not None:
                for name in decode[1](int(parts[2], 16), int(parts[3], 16)):
                    out[f"{parts[1]}.{name}"] += count
        elif parts[0] == "irq" and len(parts) == 2:
            cause = int(parts[1])
            out[f"irq.{_IRQ_NAMES.get(cause, cause)}"] += count
        elif key == "code-write":
            out["code.written"] += count  # self-modifying code or DMA into code
        elif parts[0] in ("stop", "snapshot"):
            out[key.replace("/", ".")] += count
    return dict(out)


def _register_feature(spec: DeviceSpec | None, name: str, access: str, offset: int) -> str:
    registers = _DECODERS.get(spec.kind, ({}, None))[0] if spec is not None else {}
    names = registers.get(offset)
    verb = "read" if access == "r" else "write"
    if names is not None:
        return f"{name}.{names[0 if access == 'r' else 1]}.{verb}"
    return f"{name}.{offset:#x}.{verb}"


def known_features(config: MachineConfig) -> set[str]:
    """Features a campaign on `config` can name in advance (registers of the known device
    kinds, their states, interrupt sources): the denominator of "never reached"."""
    known = {f"irq.{name}" for name in _IRQ_NAMES.values()}
    known |= {"code.written", "stop.halted", "stop.running", "snapshot.timer-armed"}
    for spec in config.devices:
        if spec.kind == "ns16550a":
            for read, write in _UART_REGISTERS.values():
                known |= {f"{spec.name}.{read}.read", f"{spec.name}.{write}.write"}
            known |= {
                f"{spec.name}.{state}"
                for state in (
                    "iir.thr-empty",
                    "iir.rx-data",
                    "iir.rx-timeout",
                    "iir.line-status",
                    "rx-fifo.data",
                    "rx-fifo.overrun",
                    "fifo-enabled",
                )
            }
        elif spec.kind == "plic":
            known |= {f"{spec.name}.claimed.{d.irq}" for d in config.devices if d.irq is not None}
    return known


def merge(total: Counter[str], run: Mapping[str, int]) -> None:
    total.update(run)
