"""What a property check finds: the rules, the properties, a Divergence and its signature.

The signature (pinned) is the dedup key of a finding: (property, first diverging
component, rule). The component is a device instance name, `cpu`, `clock`, `ram` or `rom`
(or `replay` for a replay error with no state difference before it); the rule is inferred
from what the runs showed (vm localisation), never from the configuration.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any


class Rule(enum.Enum):
    """The rules detfuzz checks (values persisted in reports: never rename one)."""

    VIRTUAL_TIMERS = "virtual-timers"  # 1: guest-affecting timers run on the VIRTUAL clock
    REPLAY_BOTTOM_HALVES = "replay-bottom-halves"  # 2: guest-affecting BHs are replay-scheduled
    LOGGED_INPUT = "logged-input"  # 3: host input reaches the guest only through the log
    SAVE_EVERY_FIELD = "save-every-field"  # 4: loadvm restores every field savevm should save
    POST_LOAD_OWN_DEVICE = "post-load-own-device"  # 5: post_load touches only its own device
    STOP_CONT_INVISIBLE = "stop-cont-invisible"  # 6: stop/cont do not change guest state
    EXACT_ICOUNT = "exact-icount"  # 7: a device sees the exact icount of its instruction
    EMULATOR_DETERMINISM = "emulator-determinism"  # the machine itself is not deterministic
    DEVICE_EXCEPTION = "device-exception"  # device code raised (a crash, not a divergence)
    WALL_CLOCK = "wall-clock"  # a run exceeded the per-example wall-clock limit

    @property
    def number(self) -> int | None:
        """The rule's number in the list of seven (None for the findings outside it)."""
        return _RULE_NUMBERS.get(self)

    @property
    def text(self) -> str:
        return _RULE_TEXT[self]


_RULE_NUMBERS = {
    Rule.VIRTUAL_TIMERS: 1,
    Rule.REPLAY_BOTTOM_HALVES: 2,
    Rule.LOGGED_INPUT: 3,
    Rule.SAVE_EVERY_FIELD: 4,
    Rule.POST_LOAD_OWN_DEVICE: 5,
    Rule.STOP_CONT_INVISIBLE: 6,
    Rule.EXACT_ICOUNT: 7,
}
_RULE_TEXT = {
    Rule.VIRTUAL_TIMERS: "timers that change guest state run on the VIRTUAL clock",
    Rule.REPLAY_BOTTOM_HALVES: "bottom halves that change guest state are replay-scheduled",
    Rule.LOGGED_INPUT: "host input reaches the guest only through the log",
    Rule.SAVE_EVERY_FIELD: "loadvm restores every field that savevm should have saved",
    Rule.POST_LOAD_OWN_DEVICE: "post_load touches only its own device",
    Rule.STOP_CONT_INVISIBLE: "stopping and continuing the VM do not change guest state",
    Rule.EXACT_ICOUNT: "a device observes the exact icount of the instruction that touches it",
    Rule.EMULATOR_DETERMINISM: "the emulator gives the same run for the same inputs",
    Rule.DEVICE_EXCEPTION: "device code does not raise",
    Rule.WALL_CLOCK: "an example finishes within the wall-clock limit",
}


class Property(enum.Enum):
    """The determinism properties (values persisted in reports)."""

    RECORD_REPLAY = "record-replay"  # 1: record (seed A) vs replay of its log (seed B)
    RECORD_NONE = "record-none"  # 2: recording does not perturb: none vs record, seed A
    STOP_CONT = "stop-cont"  # 3: replay with stops vs replay without
    SNAPSHOT = "snapshot"  # 4: savevm/loadvm round trip and replay of the tail
    SEEK = "seek"  # 5: seek vs straight replay
    DETERMINISM = "determinism"  # 6: two records with one seed: same log and trace

    @property
    def summary(self) -> str:
        return _PROPERTY_SUMMARY[self]


_PROPERTY_SUMMARY = {
    Property.RECORD_REPLAY: "a replay with another host seed reaches the recorded states",
    Property.RECORD_NONE: "recording does not change the run",
    Property.STOP_CONT: "a replay with stops reaches the states of one without",
    Property.SNAPSHOT: "loadvm(savevm(m)) is m, and a replay from the snapshot matches",
    Property.SEEK: "a seek lands on the straight replay's state",
    Property.DETERMINISM: "two recordings with one host seed are identical",
}


class DivergenceKind(enum.Enum):
    DIGEST = "digest"  # the states differ at a sample
    REPLAY_ERROR = "replay-error"  # the replay raised (divergence, stall, early end)
    LOG = "log"  # two logs that must be identical are not
    RELOAD = "reload"  # a reloaded snapshot differs from the machine it was taken from
    CRASH = "crash"  # device (or machine) code raised
    TIMEOUT = "timeout"  # the per-example wall-clock limit was hit


@dataclass(frozen=True, slots=True, order=True)
class Signature:
    property: str
    component: str
    rule: str

    def __str__(self) -> str:
        return f"{self.property}/{self.component}/{self.rule}"

    @property
    def slug(self) -> str:
        """A file-name-safe form (reports are named by signature)."""
        return str(self).replace("/", "--").replace("[", "_").replace("]", "_")


@dataclass(frozen=True, slots=True)
class Localisation:
    """Where two runs first differ, to the instruction, and what surrounds that point."""

    icount: int  # the first icount at which the states differ
    last_equal: int  # the icount before it at which they were still equal
    in_main_loop: bool  # the instruction boundary is equal; main-loop work there differs
    pc: int | None  # the instruction that reaches `icount` (in the first run)
    components: tuple[str, ...]  # every component that differs there
    differences: tuple[str, ...]  # field-level, rendered (`uart0.lsr: 96 != 97`)
    activity: tuple[str, ...]  # what ran around the guest just before, in each run
    events: tuple[str, ...]  # the log events around the point
    runs: int  # target runs the localisation took


@dataclass(frozen=True)
class Divergence:
    """One finding of one property on one scenario."""

    property: Property
    kind: DivergenceKind
    component: str
    rule: Rule
    icount: int | None  # the first differing sample (or the error's icount)
    detail: str  # one paragraph for a person
    expected: bytes | None = None  # digest of the reference run there
    observed: bytes | None = None  # digest of the checked run there
    error: dict[str, Any] | None = None  # a replay error's plain-data form
    localisation: Localisation | None = None
    notes: tuple[str, ...] = field(default=())

    @property
    def signature(self) -> Signature:
        return Signature(self.property.value, self.component, self.rule.value)

    def render(self) -> str:
        lines = [
            f"{self.signature}: {self.property.summary} -- violated ({self.kind.value})",
            f"  rule: {self.rule.text}",
            f"  {self.detail}",
        ]
        if self.error is not None:
            lines.append(f"  replay error: {self.error.get('message')}")
        loc = self.localisation
        if loc is not None:
            pc = "" if loc.pc is None else f" (pc {loc.pc:#010x})"
            if self.kind is DivergenceKind.RELOAD:
                lines.append(f"  fields savevm/loadvm at icount {loc.icount} got wrong:")
            else:
                where = "in the main-loop work at" if loc.in_main_loop else "first differs at"
                lines.append(f"  state {where} icount {loc.icount}{pc}; equal at {loc.last_equal}")
            lines += [f"    {d}" for d in loc.differences[:16]]
            if loc.activity:
                lines.append("  around the guest just before:")
                lines += [f"    {a}" for a in loc.activity[-12:]]
            if loc.events:
                lines.append("  log events around it:")
                lines += [f"    {e}" for e in loc.events]
        lines += [f"  note: {n}" for n in self.notes]
        return "\n".join(lines)
