"""Speed of savevm/loadvm (vm/snapshot.py) for a whole machine.

    python bench/snapshot_bench.py [--rounds 7] [--sizes 1,16] [--json [PATH]]

For each RAM size (MiB) and fill (no page, half the pages, every page non-zero; each
non-zero page holds incompressible pseudo-random bytes from a fixed seed), one machine is
filled and then, `--rounds` times: `savevm` of it, and `loadvm` of that snapshot into a
freshly built machine of the same configuration (building it is not timed: it costs
microseconds whatever the RAM size). The figures are medians. The first round checks the
result: the loaded machine saves to the very same bytes.

The machine has the default configuration's devices that declare a VMSTATE (savevm
refuses a device without one); the ones left out are printed.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

from vm import Machine, MachineConfig  # noqa: E402
from vm.config import DEFAULT_DEVICES, DeviceSpec  # noqa: E402
from vm.devices.registry import device_class  # noqa: E402
from vm.memory import PAGE_SIZE, RAM_BASE  # noqa: E402
from vm.snapshot import loadvm, savevm  # noqa: E402

FILLS = {"empty": 0, "half": 2, "all": 1}  # fill name -> every n-th page non-zero (0: none)
SEED = 1


@dataclass
class Figure:
    ram_mib: int
    fill: str
    nonzero_pages: int
    snapshot_mib: float
    save_ms: float
    load_ms: float
    total_ms: float
    rounds: int


def saveable_devices() -> tuple[tuple[DeviceSpec, ...], list[str]]:
    kept = tuple(s for s in DEFAULT_DEVICES if device_class(s.kind).VMSTATE is not None)
    left_out = [s.name for s in DEFAULT_DEVICES if s not in kept]
    return kept, left_out


def filled_machine(config: MachineConfig, every: int) -> tuple[Machine, int]:
    m = Machine(config)
    rng = random.Random(SEED)
    pages = config.ram_size // PAGE_SIZE
    written = 0
    if every:
        for page in range(0, pages, every):
            m.bus.write_bytes(RAM_BASE + page * PAGE_SIZE, rng.randbytes(PAGE_SIZE))
            written += 1
    # A little CPU and device state, as a running guest would have.
    m.cpu.x[1:] = [rng.getrandbits(32) for _ in range(31)]
    m.cpu.icount = 123_456_789
    return m, written


def measure(ram_mib: int, fill: str, rounds: int, devices: tuple[DeviceSpec, ...]) -> Figure:
    config = MachineConfig(ram_size=ram_mib << 20, devices=devices)
    machine, written = filled_machine(config, FILLS[fill])
    saves, loads = [], []
    data = b""
    for round_index in range(rounds):
        start = time.perf_counter()
        data = savevm(machine)
        saved = time.perf_counter()
        fresh = Machine(config)
        loading = time.perf_counter()
        loadvm(fresh, data)
        loaded = time.perf_counter()
        saves.append(saved - start)
        loads.append(loaded - loading)
        if round_index == 0 and savevm(fresh) != data:
            raise SystemExit(f"{ram_mib} MiB {fill}: the loaded machine saves differently")
    save_ms = statistics.median(saves) * 1e3
    load_ms = statistics.median(loads) * 1e3
    total_ms = statistics.median(s + ld for s, ld in zip(saves, loads, strict=True)) * 1e3
    return Figure(
        ram_mib=ram_mib,
        fill=fill,
        nonzero_pages=written,
        snapshot_mib=round(len(data) / (1 << 20), 3),
        save_ms=round(save_ms, 2),
        load_ms=round(load_ms, 2),
        total_ms=round(total_ms, 2),
        rounds=rounds,
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--sizes", default="1,16", help="RAM sizes in MiB, comma-separated")
    parser.add_argument("--json", nargs="?", const="-", help="also write JSON (to stdout: -)")
    args = parser.parse_args(argv)
    devices, left_out = saveable_devices()
    if left_out:
        print(f"(devices without a VMSTATE left out: {', '.join(left_out)})")
    figures = [
        measure(int(size), fill, args.rounds, devices)
        for size in args.sizes.split(",")
        for fill in FILLS
    ]
    print(f"savevm + loadvm, median of {args.rounds} rounds (loadvm into a fresh machine)")
    print(
        f"{'RAM':>7} {'fill':>6} {'pages':>6} {'snapshot':>10} "
        f"{'savevm':>10} {'loadvm':>10} {'total':>10} {'MiB/s':>7}"
    )
    for f in figures:
        rate = f.snapshot_mib / (f.total_ms / 1e3) if f.total_ms else 0.0
        print(
            f"{f.ram_mib:>4} MiB {f.fill:>6} {f.nonzero_pages:>6} {f.snapshot_mib:>6.2f} MiB "
            f"{f.save_ms:>7.2f} ms {f.load_ms:>7.2f} ms {f.total_ms:>7.2f} ms {rate:>7.0f}"
        )
    if args.json:
        text = json.dumps([asdict(f) for f in figures], indent=2)
        if args.json == "-":
            print(text)
        else:
            Path(args.json).write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
