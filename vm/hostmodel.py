"""The host model: everything a real host would decide, from one seed (pinned).

A real host decides how long a slice of guest instructions takes, where its main loop
interrupts the CPU, how long a stop lasts, what its wall clock reads and how fast it drifts,
which random bytes it hands out and how long a disk takes. detfuzz asks this object
instead, and every answer is a pure function of (seed, stream name, index): two runs that ask
the same questions get the same answers in any order, so a run in mode none and a record run
with the same seed interleave identically, while a replay with another seed sees another
host (which a correct machine must not notice).

Nothing in `vm/` may read the real clock, `os.urandom`, an unseeded `random` or the
environment; this module is where host behaviour comes from instead.
"""

from __future__ import annotations

import hashlib
import struct
from dataclasses import dataclass

_U64 = struct.Struct("<Q")


@dataclass(frozen=True, slots=True)
class HostProfile:
    """The ranges the host model draws from; the defaults resemble a busy desktop."""

    quantum_insns_min: int = 64  # where the main loop interrupts the CPU, in instructions
    quantum_insns_max: int = 50_000
    host_ps_per_insn_min: int = 300  # host time per guest instruction, in picoseconds
    host_ps_per_insn_max: int = 3_000
    stop_ns_min: int = 1_000  # how long a requested stop lasts
    stop_ns_max: int = 50_000_000
    host_clock_base_ns_min: int = 1_700_000_000 * 10**9  # the HOST clock's wall-time origin
    host_clock_base_ns_max: int = 1_900_000_000 * 10**9
    host_clock_drift_ppm_max: int = 200  # HOST clock rate error against REALTIME
    block_latency_ns_min: int = 20_000
    block_latency_ns_max: int = 5_000_000


class HostModel:
    """Seeded host decisions. Callers own the indices (one counter per stream)."""

    def __init__(self, seed: int, *, profile: HostProfile | None = None) -> None:
        if not 0 <= seed < 1 << 64:
            raise ValueError(f"host seed must be a 64-bit unsigned int, got {seed}")
        self.seed = seed
        self.profile = profile or HostProfile()
        self._key = _U64.pack(seed)

    # -- the primitive --------------------------------------------------------------------

    def draw(self, stream: str, index: int) -> int:
        """A uniform 64-bit value, a pure function of (seed, stream, index)."""
        digest = hashlib.blake2b(
            f"{stream}\0{index}".encode(), key=self._key, digest_size=8
        ).digest()
        return _U64.unpack(digest)[0]

    def between(self, stream: str, index: int, low: int, high: int) -> int:
        """A value in [low, high], uniform up to a bias below 2**-40 for ranges we use."""
        if high < low:
            raise ValueError(f"empty range [{low}, {high}]")
        return low + self.draw(stream, index) % (high - low + 1)

    def log_between(self, stream: str, index: int, low: int, high: int) -> int:
        """A value in [low, high] spread evenly over orders of magnitude (short and long
        both common), for quanta and durations."""
        if not 0 < low <= high:
            raise ValueError(f"log range needs 0 < low <= high, got [{low}, {high}]")
        span = high.bit_length() - low.bit_length() + 1
        magnitude = low.bit_length() + self.draw(stream + "/mag", index) % span
        top = min(high, (1 << magnitude) - 1)
        bottom = max(low, 1 << (magnitude - 1))
        return self.between(stream, index, bottom, max(bottom, top))

    # -- the host's decisions ---------------------------------------------------------------

    def quantum_insns(self, index: int) -> int:
        """How many instructions slice `index` may run before the main loop takes over."""
        p = self.profile
        return self.log_between("quantum", index, p.quantum_insns_min, p.quantum_insns_max)

    def slice_host_ns(self, index: int, insns: int) -> int:
        """Host time spent on slice `index`, which ran `insns` instructions."""
        p = self.profile
        ps = self.between("slice-ps", index, p.host_ps_per_insn_min, p.host_ps_per_insn_max)
        return max(1, insns * ps // 1000)

    def stop_ns(self, index: int) -> int:
        """How long stop number `index` lasts in host time."""
        p = self.profile
        return self.log_between("stop", index, p.stop_ns_min, p.stop_ns_max)

    def host_clock_base_ns(self) -> int:
        p = self.profile
        return self.between(
            "host-clock-base", 0, p.host_clock_base_ns_min, p.host_clock_base_ns_max
        )

    def host_clock_drift_ppm(self) -> int:
        p = self.profile
        drift = p.host_clock_drift_ppm_max
        return self.between("host-clock-drift", 0, -drift, drift)

    def entropy(self, index: int, length: int) -> bytes:
        """`length` random bytes for request `index` of the host's entropy source."""
        out = bytearray()
        block = 0
        while len(out) < length:
            out += _U64.pack(self.draw(f"entropy/{index}", block))
            block += 1
        return bytes(out[:length])

    def block_latency_ns(self, request: int) -> int:
        """How long the host's disk takes to complete request number `request`."""
        p = self.profile
        return self.log_between(
            "block-latency", request, p.block_latency_ns_min, p.block_latency_ns_max
        )
