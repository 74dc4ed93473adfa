"""The VMState interpreter (vm/vmstate.py): field types, versions, subsections, hooks,
validation of hostile data, and save/load round trips through msgpack."""

from __future__ import annotations

import copy
from types import SimpleNamespace
from typing import Any

import msgpack
import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from vm.vmstate import (
    I8,
    I16,
    I32,
    I64,
    U8,
    U16,
    U32,
    U64,
    Array,
    ArrayKind,
    Bool,
    BoolKind,
    Bytes,
    BytesKind,
    Fifo,
    FifoKind,
    IntKind,
    Kind,
    OptionalInt,
    OptionalKind,
    Struct,
    StructKind,
    Subsection,
    VMStateDescription,
    VMStateError,
    check,
    field_names,
    load,
    save,
)

# -- helpers: objects with reset values, reading paths, strict comparison ---------------------


class Thing(SimpleNamespace):
    """A plain object to save from and load into; attributes are set by the tests."""


def reset_value(kind: Kind) -> object:
    """The value a freshly constructed object holds for a field of `kind`."""
    if isinstance(kind, IntKind):
        return 0
    if isinstance(kind, BoolKind):
        return False
    if isinstance(kind, BytesKind):
        data = bytes(kind.length or 0)
        return bytearray(data) if kind.mutable else data
    if isinstance(kind, FifoKind):
        return bytearray()
    if isinstance(kind, OptionalKind):
        return None
    if isinstance(kind, ArrayKind):
        return [reset_value(kind.element)] * (kind.length or 0)
    assert isinstance(kind, StructKind)
    return fresh_from_fields(kind.fields)


def fresh_from_fields(fields: Any) -> Thing:
    return Thing(**{f.attr: reset_value(f.kind) for f in fields})


def fresh(desc: VMStateDescription) -> Thing:
    """A freshly reset object for `desc`: every field of it and its subsections at reset."""
    obj = fresh_from_fields(desc.fields)
    for sub in desc.subsections:
        obj.__dict__.update(vars(fresh(sub.desc)))
    return obj


def read_path(obj: object, path: str) -> object:
    for part in path.split("."):
        obj = getattr(obj, part)
    return obj


def same(a: object, b: object) -> bool:
    """Equality that also compares types, so True vs 1 and bytes vs bytearray differ."""
    if type(a) is not type(b):
        return False
    if isinstance(a, list):
        assert isinstance(b, list)
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict):
        assert isinstance(b, dict)
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    return a == b


def covered_state(desc: VMStateDescription, obj: object) -> dict[str, object]:
    return {path: copy.deepcopy(read_path(obj, path)) for path in sorted(field_names(desc))}


def through_msgpack(data: object) -> object:
    return msgpack.unpackb(msgpack.packb(data), raw=False)


def one_field(field: Any, version: int = 1) -> VMStateDescription:
    return VMStateDescription("dev", version=version, minimum_version=1, fields=[field])


def section(fields: dict[str, object], *, name: str = "dev", version: int = 1) -> dict:
    return {"name": name, "version": version, "fields": fields, "subsections": []}


def raises_vmstate(pattern: str) -> Any:
    return pytest.raises(VMStateError, match=pattern)


# -- integers and Bool -------------------------------------------------------------------------

INT_KINDS = [U8, U16, U32, U64, I8, I16, I32, I64]


@pytest.mark.parametrize("kind", INT_KINDS, ids=lambda k: k.label.split()[0])
def test_each_integer_width_loads_both_ends_of_its_range(kind):
    desc = one_field(kind("reg"))
    for value in (kind.low, kind.high):
        obj = Thing(reg=0)
        load(desc, obj, section({"reg": value}))
        assert obj.reg == value
        assert save(desc, obj)["fields"] == {"reg": value}


@pytest.mark.parametrize("kind", INT_KINDS, ids=lambda k: k.label.split()[0])
def test_each_integer_width_rejects_one_past_either_end(kind):
    desc = one_field(kind("reg"))
    for value in (kind.low - 1, kind.high + 1):
        with raises_vmstate(r"load dev\.reg: .* out of range for [UI]\d+"):
            load(desc, Thing(reg=0), section({"reg": value}))


def test_signed_widths_are_twos_complement_ranges():
    assert (I8.low, I8.high) == (-128, 127)
    assert (I32.low, I32.high) == (-(2**31), 2**31 - 1)
    assert (U64.low, U64.high) == (0, 2**64 - 1)


def test_a_bool_is_not_accepted_as_an_integer_nor_an_integer_as_a_bool():
    with raises_vmstate(r"load dev\.reg: expected U8 .*got bool"):
        load(one_field(U8("reg")), Thing(reg=0), section({"reg": True}))
    with raises_vmstate(r"load dev\.flag: expected Bool, got int"):
        load(one_field(Bool("flag")), Thing(flag=False), section({"flag": 1}))


def test_a_bool_field_round_trips_both_values():
    desc = one_field(Bool("flag"))
    for value in (False, True):
        obj = Thing(flag=False)
        load(desc, obj, save(desc, Thing(flag=value)))
        assert obj.flag is value


def test_an_int_enum_attribute_is_saved_as_a_plain_int():
    import enum

    class Mode(enum.IntEnum):
        FIFO = 1

    saved = save(one_field(U8("mode")), Thing(mode=Mode.FIFO))
    assert type(saved["fields"]["mode"]) is int


# -- bytes, arrays, FIFO, optional, struct ------------------------------------------------------


def test_fixed_length_bytes_need_exactly_that_length():
    desc = one_field(Bytes("mac", length=6))
    obj = Thing(mac=bytes(6))
    load(desc, obj, section({"mac": b"\x52\x54\x00\x12\x34\x56"}))
    assert obj.mac == b"\x52\x54\x00\x12\x34\x56"
    for bad in (b"", b"\x00" * 5, b"\x00" * 7):
        with raises_vmstate(r"load dev\.mac: length \d+ is not the fixed length 6"):
            load(desc, Thing(mac=bytes(6)), section({"mac": bad}))


def test_bounded_bytes_accept_up_to_the_maximum_and_reject_more():
    desc = one_field(Bytes("name", max_length=4))
    for ok in (b"", b"abcd"):
        obj = Thing(name=b"")
        load(desc, obj, section({"name": ok}))
        assert obj.name == ok and type(obj.name) is bytes
    with raises_vmstate(r"load dev\.name: length 5 exceeds the maximum 4"):
        load(desc, Thing(name=b""), section({"name": b"abcde"}))


def test_mutable_bytes_load_as_a_bytearray_and_save_as_bytes():
    desc = one_field(Bytes("buf", max_length=4, mutable=True))
    obj = Thing(buf=bytearray())
    load(desc, obj, section({"buf": b"ab"}))
    assert obj.buf == bytearray(b"ab") and type(obj.buf) is bytearray
    assert type(save(desc, obj)["fields"]["buf"]) is bytes


def test_bytes_reject_text():
    with raises_vmstate(r"load dev\.mac: expected Bytes \(length 2\), got str"):
        load(one_field(Bytes("mac", length=2)), Thing(mac=b"\0\0"), section({"mac": "ab"}))


def test_a_fixed_length_array_round_trips_and_rejects_other_lengths():
    desc = one_field(Array("prio", U32, length=4))
    obj = Thing(prio=[0] * 4)
    load(desc, obj, save(desc, Thing(prio=[7, 0, 2**32 - 1, 1])))
    assert obj.prio == [7, 0, 2**32 - 1, 1]
    with raises_vmstate(r"load dev\.prio: length 3 is not the fixed length 4"):
        load(desc, Thing(prio=[0] * 4), section({"prio": [1, 2, 3]}))


def test_a_bounded_array_rejects_a_list_longer_than_its_maximum():
    desc = one_field(Array("queue", U8, max_length=2))
    with raises_vmstate(r"load dev\.queue: length 3 exceeds the maximum 2"):
        load(desc, Thing(queue=[]), section({"queue": [1, 2, 3]}))


def test_an_array_element_error_names_its_index():
    desc = one_field(Array("prio", U8, length=3))
    with raises_vmstate(r"load dev\.prio\[2\]: 256 is out of range for U8"):
        load(desc, Thing(prio=[0] * 3), section({"prio": [0, 1, 256]}))
    with raises_vmstate(r"load dev\.prio: .*must be a list, got dict"):
        load(desc, Thing(prio=[0] * 3), section({"prio": {}}))


def test_arrays_nest_and_hold_bytes():
    desc = one_field(Array("rows", ArrayKind(BytesKind(length=1), max_length=2), length=2))
    obj = Thing(rows=[[], []])
    load(desc, obj, save(desc, Thing(rows=[[b"a"], [b"b", b"c"]])))
    assert obj.rows == [[b"a"], [b"b", b"c"]]


def test_a_fifo_loads_as_a_bytearray_with_the_oldest_byte_first():
    desc = one_field(Fifo("rx", capacity=16))
    obj = Thing(rx=bytearray())
    load(desc, obj, save(desc, Thing(rx=bytearray(b"xyz"))))
    assert type(obj.rx) is bytearray and obj.rx.pop(0) == ord("x")


def test_a_fifo_over_capacity_fails_on_save_and_on_load():
    desc = one_field(Fifo("rx", capacity=2))
    with raises_vmstate(r"save dev\.rx: length 3 exceeds the maximum 2"):
        save(desc, Thing(rx=bytearray(b"abc")))
    with raises_vmstate(r"load dev\.rx: length 3 exceeds the maximum 2"):
        load(desc, Thing(rx=bytearray()), section({"rx": b"abc"}))


def test_a_fifo_must_be_held_as_a_bytearray():
    # A deque(maxlen=...) would silently drop bytes on overrun; the engine refuses it.
    from collections import deque

    with raises_vmstate(r"save dev\.rx: expected Fifo \(capacity 2\) as a bytearray, got deque"):
        save(one_field(Fifo("rx", capacity=2)), Thing(rx=deque(b"a", maxlen=2)))


def test_an_optional_int_saves_none_or_a_value_of_its_width():
    desc = one_field(OptionalInt("deadline_ns"))
    for value in (None, 0, 2**64 - 1):
        obj = Thing(deadline_ns=123)
        load(desc, obj, through_msgpack(save(desc, Thing(deadline_ns=value))))
        assert obj.deadline_ns == value
    with raises_vmstate(r"load dev\.deadline_ns: -1 is out of range for U64"):
        load(desc, Thing(deadline_ns=None), section({"deadline_ns": -1}))
    with raises_vmstate(r"load dev\.delta: 128 is out of range for I8"):
        load(one_field(OptionalInt("delta", I8)), Thing(delta=None), section({"delta": 128}))


def test_struct_fields_load_into_the_existing_sub_object():
    desc = one_field(Struct("timer", [OptionalInt("deadline_ns"), U32("period")]))
    timer = Thing(deadline_ns=None, period=0, callback="kept")
    obj = Thing(timer=timer)
    load(desc, obj, save(desc, Thing(timer=Thing(deadline_ns=500, period=7))))
    assert obj.timer is timer
    assert (timer.deadline_ns, timer.period, timer.callback) == (500, 7, "kept")


def test_struct_errors_name_the_dotted_path():
    desc = one_field(Struct("timer", [U8("period")]))
    with raises_vmstate(r"load dev\.timer\.period: 300 is out of range"):
        load(desc, Thing(timer=Thing(period=0)), section({"timer": {"period": 300}}))
    with raises_vmstate(r"load dev\.timer: unknown field 'x'"):
        load(desc, Thing(timer=Thing(period=0)), section({"timer": {"period": 1, "x": 1}}))


def test_field_names_cover_fields_struct_paths_and_subsections():
    sub = VMStateDescription("dev/sub", 1, 1, [U8("extra")])
    desc = VMStateDescription(
        "dev",
        1,
        1,
        [U8("lsr"), Struct("timer", [OptionalInt("deadline_ns")])],
        subsections=[Subsection(sub, needed=lambda _: False)],
    )
    assert field_names(desc) == frozenset({"lsr", "timer.deadline_ns", "extra"})


# -- versions ----------------------------------------------------------------------------------

V2 = VMStateDescription("dev", version=2, minimum_version=1, fields=[U8("lcr"), U8("fcr", since=2)])


def test_a_field_new_in_version_2_keeps_its_reset_value_when_version_1_is_loaded():
    obj = Thing(lcr=0, fcr=0xC1)  # 0xC1 stands for the reset value
    load(V2, obj, section({"lcr": 3}, version=1))
    assert (obj.lcr, obj.fcr) == (3, 0xC1)


def test_a_field_new_in_version_2_is_loaded_from_version_2():
    obj = Thing(lcr=0, fcr=0)
    load(V2, obj, section({"lcr": 3, "fcr": 7}, version=2))
    assert (obj.lcr, obj.fcr) == (3, 7)


def test_a_version_1_section_may_not_carry_a_version_2_field():
    with raises_vmstate(r"load dev: field 'fcr' is new in version 2, saved at 1"):
        load(V2, Thing(lcr=0, fcr=0), section({"lcr": 3, "fcr": 7}, version=1))


def test_a_version_2_section_must_carry_its_version_2_field():
    with raises_vmstate(r"load dev: missing field 'fcr'"):
        load(V2, Thing(lcr=0, fcr=0), section({"lcr": 3}, version=2))


def test_save_writes_the_newest_version_with_every_field():
    assert save(V2, Thing(lcr=1, fcr=2)) == section({"lcr": 1, "fcr": 2}, version=2)


def test_a_section_newer_than_the_description_is_rejected():
    with raises_vmstate(r"load dev: version 3 is newer than supported \(2\)"):
        load(V2, Thing(lcr=0, fcr=0), section({"lcr": 3, "fcr": 7}, version=3))


def test_a_section_older_than_the_minimum_version_is_rejected():
    desc = VMStateDescription("dev", version=3, minimum_version=2, fields=[U8("lcr")])
    with raises_vmstate(r"load dev: version 1 is older than the minimum \(2\)"):
        load(desc, Thing(lcr=0), section({"lcr": 3}, version=1))


def test_a_version_must_be_an_int():
    for bad in ("2", True, None, 2.0):
        with raises_vmstate(r"load dev: version must be an int"):
            load(V2, Thing(lcr=0, fcr=0), {**section({"lcr": 1}), "version": bad})


# -- subsections -------------------------------------------------------------------------------

FIFO_SUB = VMStateDescription("dev/fifo", 1, 1, [Fifo("rx", capacity=4), U8("trigger")])
WITH_SUB = VMStateDescription(
    "dev",
    1,
    1,
    [U8("lcr")],
    subsections=[Subsection(FIFO_SUB, needed=lambda dev: bool(dev.rx))],
)


def fresh_with_sub() -> Thing:
    return Thing(lcr=0, rx=bytearray(), trigger=1)


def test_a_subsection_is_saved_only_when_needed():
    assert save(WITH_SUB, fresh_with_sub())["subsections"] == []
    busy = Thing(lcr=0, rx=bytearray(b"a"), trigger=4)
    assert save(WITH_SUB, busy)["subsections"] == [
        {"name": "dev/fifo", "version": 1, "fields": {"rx": b"a", "trigger": 4}, "subsections": []}
    ]


def test_an_absent_subsection_leaves_its_fields_at_their_reset_values():
    obj = fresh_with_sub()
    load(WITH_SUB, obj, section({"lcr": 3}))
    assert (obj.lcr, obj.rx, obj.trigger) == (3, bytearray(), 1)


def test_a_present_subsection_is_loaded():
    obj = fresh_with_sub()
    load(WITH_SUB, obj, save(WITH_SUB, Thing(lcr=3, rx=bytearray(b"ab"), trigger=4)))
    assert (obj.lcr, obj.rx, obj.trigger) == (3, bytearray(b"ab"), 4)


def test_a_present_subsection_is_loaded_whatever_needed_would_say():
    # QEMU loads every subsection in the stream; `needed` only decides what is saved.
    data = section({"lcr": 3})
    data["subsections"] = [section({"rx": b"", "trigger": 8}, name="dev/fifo")]
    obj = fresh_with_sub()
    load(WITH_SUB, obj, data)
    assert obj.trigger == 8


SUB_OK = section({"rx": b"", "trigger": 2}, name="dev/fifo")


@pytest.mark.parametrize(
    ("subsections", "message"),
    [
        ({}, r"load dev: subsections must be a list, got dict"),
        ([7], r"load dev: a subsection must be a dict, got int"),
        ([{"version": 1}], r"load dev: subsection name must be a str, got NoneType"),
        ([{**SUB_OK, "name": "dev/nope"}], r"load dev: unknown subsection 'dev/nope'"),
        ([SUB_OK, SUB_OK], r"load dev: subsection 'dev/fifo' appears twice"),
        ([{**SUB_OK, "version": 2}], r"load dev/fifo: version 2 is newer than supported"),
        ([{**SUB_OK, "fields": {"rx": b""}}], r"load dev/fifo: missing field 'trigger'"),
        ([{**SUB_OK, "fields": {"rx": b"", "trigger": -1}}], r"load dev/fifo\.trigger: -1"),
    ],
)
def test_a_bad_subsection_is_rejected_with_its_name(subsections, message):
    with raises_vmstate(message):
        load(WITH_SUB, fresh_with_sub(), {**section({"lcr": 3}), "subsections": subsections})


def test_nested_subsections_save_and_load():
    inner = VMStateDescription("dev/a/b", 1, 1, [U8("b")])
    middle = VMStateDescription("dev/a", 1, 1, [U8("a")], [Subsection(inner, lambda o: o.b)])
    desc = VMStateDescription("dev", 1, 1, [U8("x")], [Subsection(middle, lambda o: o.a)])
    obj = Thing(x=0, a=0, b=0)
    load(desc, obj, through_msgpack(save(desc, Thing(x=1, a=2, b=3))))
    assert (obj.x, obj.a, obj.b) == (1, 2, 3)


# -- hooks -------------------------------------------------------------------------------------


class Hooked:
    """Records every hook call and field read, to check order and counts."""

    def __init__(self) -> None:
        self.log: list[str] = []
        self.lcr = 0
        self.cache = 0

    def pre_save(self) -> None:
        self.log.append("pre_save")
        self.lcr = 9  # pre_save may prepare what the fields then read

    def sub_pre_save(self) -> None:
        self.log.append("sub pre_save")

    def needed(self) -> bool:
        self.log.append("needed")
        return self.lcr == 9

    def post_load(self) -> None:
        self.log.append(f"post_load lcr={self.lcr} cache={self.cache}")

    def sub_post_load(self) -> None:
        self.log.append(f"sub post_load lcr={self.lcr} cache={self.cache}")


HOOKED_SUB = VMStateDescription(
    "h/sub", 1, 1, [U8("cache")], pre_save=Hooked.sub_pre_save, post_load=Hooked.sub_post_load
)
HOOKED = VMStateDescription(
    "h",
    1,
    1,
    [U8("lcr")],
    subsections=[Subsection(HOOKED_SUB, needed=Hooked.needed)],
    pre_save=Hooked.pre_save,
    post_load=Hooked.post_load,
)


def test_pre_save_runs_once_before_needed_and_the_fields_are_read():
    obj = Hooked()
    data = save(HOOKED, obj)
    assert obj.log == ["pre_save", "needed", "sub pre_save"]
    assert data["fields"] == {"lcr": 9} and len(data["subsections"]) == 1


def test_a_subsections_pre_save_does_not_run_when_it_is_not_needed():
    obj = Hooked()
    desc = VMStateDescription("h", 1, 1, [U8("lcr")], [Subsection(HOOKED_SUB, lambda _: False)])
    save(desc, obj)
    assert obj.log == []


def test_post_load_runs_once_after_every_value_is_assigned_subsections_first():
    data = section({"lcr": 5}, name="h")
    data["subsections"] = [section({"cache": 6}, name="h/sub")]
    obj = Hooked()
    load(HOOKED, obj, data)
    assert obj.log == ["sub post_load lcr=5 cache=6", "post_load lcr=5 cache=6"]


def test_post_load_does_not_run_when_the_data_is_rejected():
    obj = Hooked()
    with raises_vmstate(r"load h/sub\.cache"):
        load(
            HOOKED,
            obj,
            {
                **section({"lcr": 5}, name="h"),
                "subsections": [section({"cache": -1}, name="h/sub")],
            },
        )
    assert obj.log == [] and (obj.lcr, obj.cache) == (0, 0)


# -- validation ---------------------------------------------------------------------------------

SAMPLE = VMStateDescription(
    "uart0",
    1,
    1,
    [U8("lsr"), Bytes("mac", length=2), Array("prio", U8, length=2), Fifo("rx", capacity=2)],
)
SAMPLE_OK = section({"lsr": 0x60, "mac": b"ab", "prio": [1, 2], "rx": b"x"}, name="uart0")


def fresh_sample() -> Thing:
    return Thing(lsr=0, mac=bytes(2), prio=[0, 0], rx=bytearray())


def with_fields(**fields: object) -> dict:
    return {**SAMPLE_OK, "fields": {**SAMPLE_OK["fields"], **fields}}


def without_field(name: str) -> dict:
    return {**SAMPLE_OK, "fields": {k: v for k, v in SAMPLE_OK["fields"].items() if k != name}}


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ([], r"load uart0: a section must be a dict, got list"),
        ({**SAMPLE_OK, "name": "uart1"}, r"load uart0: unknown section 'uart1', expected 'uart0'"),
        ({**SAMPLE_OK, "name": 3}, r"load uart0: unknown section 3"),
        ({k: v for k, v in SAMPLE_OK.items() if k != "fields"}, r"missing section key 'fields'"),
        ({**SAMPLE_OK, "extra": 1}, r"load uart0: unknown section key 'extra'"),
        ({**SAMPLE_OK, "fields": [1]}, r"load uart0: fields must be a dict, got list"),
        (without_field("mac"), r"load uart0: missing field 'mac'"),
        (with_fields(ier=0), r"load uart0: unknown field 'ier'"),
        ({**SAMPLE_OK, "fields": {**SAMPLE_OK["fields"], 7: 0}}, r"load uart0: unknown field 7"),
        (with_fields(lsr="0x60"), r"load uart0\.lsr: expected U8 \(0\.\.255\), got str"),
        (with_fields(lsr=1.0), r"load uart0\.lsr: expected U8 .*got float"),
        (with_fields(lsr=2**100), r"load uart0\.lsr: \d+ is out of range for U8"),
        (with_fields(mac=b"abc"), r"load uart0\.mac: length 3 is not the fixed length 2"),
        (with_fields(prio=[1, 2, 3]), r"load uart0\.prio: length 3 is not the fixed length 2"),
        (with_fields(prio=[1, None]), r"load uart0\.prio\[1\]: expected U8 .*got NoneType"),
        (with_fields(rx=b"xyz"), r"load uart0\.rx: length 3 exceeds the maximum 2"),
        (with_fields(rx=[1]), r"load uart0\.rx: expected Fifo \(capacity 2\) as bytes, got list"),
    ],
)
def test_bad_data_is_rejected_with_a_message_naming_section_and_field(data, message):
    obj = fresh_sample()
    with raises_vmstate(message) as caught:
        load(SAMPLE, obj, data)
    assert isinstance(caught.value, ValueError)
    assert same(covered_state(SAMPLE, obj), covered_state(SAMPLE, fresh_sample()))


def test_a_valid_sample_loads():
    obj = fresh_sample()
    load(SAMPLE, obj, SAMPLE_OK)
    assert (obj.lsr, obj.mac, obj.prio, obj.rx) == (0x60, b"ab", [1, 2], bytearray(b"x"))


def test_a_load_that_fails_on_its_last_field_assigns_nothing():
    obj = fresh_sample()
    with raises_vmstate(r"uart0\.rx"):
        load(SAMPLE, obj, with_fields(lsr=0x61, rx=b"too long"))
    assert obj.lsr == 0


def test_check_validates_without_assigning_and_commit_assigns():
    obj = fresh_sample()
    staged = check(SAMPLE, obj, SAMPLE_OK)
    assert obj.lsr == 0
    staged.commit()
    assert obj.lsr == 0x60


def test_a_missing_target_attribute_fails_before_anything_is_assigned():
    desc = VMStateDescription("dev", 1, 1, [U8("lcr"), Struct("timer", [U8("period")])])
    obj = Thing(lcr=0, timer=Thing())  # the sub-object lacks `period`
    with raises_vmstate(r"load dev\.timer\.period: the object has no attribute 'period'"):
        load(desc, obj, section({"lcr": 1, "timer": {"period": 2}}))
    assert obj.lcr == 0


@pytest.mark.parametrize(
    ("obj", "message"),
    [
        (Thing(mac=bytes(2), prio=[0, 0], rx=bytearray()), r"save uart0\.lsr: .*no attribute"),
        (Thing(lsr=256, mac=bytes(2), prio=[0, 0], rx=bytearray()), r"save uart0\.lsr: 256"),
        (Thing(lsr=0, mac=bytes(2), prio=[0, -1], rx=bytearray()), r"save uart0\.prio\[1\]"),
        (Thing(lsr=0, mac="ab", prio=[0, 0], rx=bytearray()), r"save uart0\.mac: .*got str"),
    ],
)
def test_save_refuses_a_device_holding_a_value_its_field_cannot_hold(obj, message):
    with raises_vmstate(message):
        save(SAMPLE, obj)


@pytest.mark.parametrize(
    "build",
    [
        lambda: VMStateDescription("d", 1, 2, [U8("a")]),
        lambda: VMStateDescription("d", 0, 0, [U8("a")]),
        lambda: VMStateDescription("", 1, 1, [U8("a")]),
        lambda: VMStateDescription("d", 1, 1, [U8("a", since=2)]),
        lambda: VMStateDescription("d", 1, 1, [Struct("t", [U8("a", since=2)])]),
        lambda: VMStateDescription("d", 1, 1, [U8("a"), U16("a")]),
        lambda: VMStateDescription(
            "d", 1, 1, [U8("a")], [Subsection(VMStateDescription("d/s", 1, 1, [U8("a")]), bool)]
        ),
        lambda: VMStateDescription(
            "d", 1, 1, [], [Subsection(VMStateDescription("d", 1, 1, []), bool)]
        ),
        lambda: U8("not an identifier"),
        lambda: U8("a", since=0),
        lambda: Bytes("a"),
        lambda: Bytes("a", length=1, max_length=2),
        lambda: Array("a", U8, max_length=-1),
        lambda: Array("a", StructKind(()), length=1),
        lambda: OptionalInt("a", Bool),  # type: ignore[arg-type]
    ],
)
def test_inconsistent_declarations_are_rejected_when_the_description_is_built(build):
    with pytest.raises(ValueError) as caught:
        build()
    assert not isinstance(caught.value, VMStateError)  # a programming error, not bad data


# -- properties: round trips and hostile input --------------------------------------------------

EXTRA = VMStateDescription("sink/extra", 2, 1, [U32("extra"), Bytes("blob", max_length=8, since=2)])
SINK = VMStateDescription(
    "sink",
    version=3,
    minimum_version=1,
    fields=[
        *(kind(f"i{n}") for n, kind in enumerate(INT_KINDS)),
        Bool("flag"),
        Bytes("mac", length=6),
        Bytes("name", max_length=12),
        Bytes("buf", max_length=4, mutable=True),
        Array("prio", U32, length=4),
        Array("queue", I16, max_length=5),
        Array("rows", ArrayKind(U8, max_length=3), max_length=3),
        Array("masks", BytesKind(length=2), length=2),
        Array("deadlines", OptionalKind(U64), max_length=2),
        Fifo("rx", capacity=16),
        OptionalInt("deadline_ns"),
        OptionalInt("offset", I64),
        Struct("timer", [OptionalInt("deadline_ns"), U32("period", since=2)]),
        U32("late", since=3),
    ],
    # Needed exactly when the subsection's fields differ from reset, so a round trip
    # through a fresh object restores them either way.
    subsections=[Subsection(EXTRA, needed=lambda o: o.extra != 0 or o.blob != b"")],
)


def values_of(kind: Kind) -> st.SearchStrategy[Any]:
    """Any value a field of `kind` may hold."""
    if isinstance(kind, IntKind):
        return st.integers(kind.low, kind.high)
    if isinstance(kind, BoolKind):
        return st.booleans()
    if isinstance(kind, BytesKind):
        size = st.binary(min_size=kind.length or 0, max_size=kind.length or kind.max_length)
        return size.map(bytearray) if kind.mutable else size
    if isinstance(kind, FifoKind):
        return st.binary(max_size=kind.capacity).map(bytearray)
    if isinstance(kind, OptionalKind):
        return st.none() | values_of(kind.inner)
    if isinstance(kind, ArrayKind):
        size = kind.length if kind.length is not None else kind.max_length
        return st.lists(values_of(kind.element), min_size=kind.length or 0, max_size=size)
    assert isinstance(kind, StructKind)
    return objects_of(kind.fields)


def objects_of(fields: Any) -> st.SearchStrategy[Thing]:
    return st.fixed_dictionaries({f.attr: values_of(f.kind) for f in fields}).map(
        lambda attrs: Thing(**attrs)
    )


def states_of(desc: VMStateDescription) -> st.SearchStrategy[Thing]:
    fields = [*desc.fields, *(f for sub in desc.subsections for f in sub.desc.fields)]
    return objects_of(fields)


@given(states_of(SINK))
def test_save_then_load_into_a_fresh_object_restores_every_covered_attribute(obj):
    target = fresh(SINK)
    load(SINK, target, save(SINK, obj))
    assert same(covered_state(SINK, target), covered_state(SINK, obj))


@given(states_of(SINK))
def test_saved_data_survives_msgpack_unchanged_and_still_loads(obj):
    data = save(SINK, obj)
    assert same(through_msgpack(data), data)
    target = fresh(SINK)
    load(SINK, target, through_msgpack(data))
    assert same(covered_state(SINK, target), covered_state(SINK, obj))


@given(states_of(SINK))
def test_saving_is_deterministic_down_to_the_msgpack_bytes(obj):
    assert msgpack.packb(save(SINK, obj)) == msgpack.packb(save(SINK, copy.deepcopy(obj)))


LEAVES = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats()
    | st.binary(max_size=20)
    | st.text(max_size=8)
)
ANY_DATA = st.recursive(
    LEAVES,
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(st.text(max_size=6) | st.integers() | st.none(), inner, max_size=4)
    ),
    max_leaves=16,
)
FIELD_KEYS = st.sampled_from(sorted(field_names(SINK))) | st.text(max_size=6)
SECTION_SHAPED = st.fixed_dictionaries(
    {
        "name": st.sampled_from(["sink", "sink/extra"]) | ANY_DATA,
        "version": st.integers(-1, 4) | ANY_DATA,
        "fields": st.dictionaries(FIELD_KEYS, ANY_DATA, max_size=30) | ANY_DATA,
        "subsections": st.lists(
            st.fixed_dictionaries(
                {"name": st.just("sink/extra") | ANY_DATA, "version": st.integers(0, 3)},
                optional={"fields": ANY_DATA, "subsections": ANY_DATA},
            )
            | ANY_DATA,
            max_size=2,
        )
        | ANY_DATA,
    },
    optional={"junk": ANY_DATA},
)


def load_or_reject(data: object) -> None:
    """Load `data` into a fresh object: it either loads or raises VMStateError leaving the
    object exactly as reset. Any other exception fails the test."""
    obj = fresh(SINK)
    before = covered_state(SINK, obj)
    try:
        load(SINK, obj, data)
    except VMStateError:
        assert same(covered_state(SINK, obj), before)
        return
    save(SINK, obj)  # whatever loaded is valid state again


@given(ANY_DATA | SECTION_SHAPED)
@example({"name": "sink", "version": 3, "fields": {}, "subsections": [{"name": "sink/extra"}]})
@example({"name": "sink", "version": True, "fields": {}, "subsections": []})
def test_arbitrary_data_loads_or_raises_only_vmstate_error(data):
    load_or_reject(data)


def leaf_paths(data: object, prefix: tuple = ()) -> list[tuple]:
    """Paths to every value inside saved data (dict keys and list indexes)."""
    paths = [prefix]
    if isinstance(data, dict):
        for key, value in data.items():
            paths += leaf_paths(value, (*prefix, key))
    elif isinstance(data, list):
        for i, value in enumerate(data):
            paths += leaf_paths(value, (*prefix, i))
    return paths


def replaced(data: Any, path: tuple, value: object) -> Any:
    if not path:
        return value
    data = copy.copy(data)
    data[path[0]] = replaced(data[path[0]], path[1:], value)
    return data


@given(states_of(SINK), st.data())
def test_valid_data_with_one_value_replaced_loads_or_raises_only_vmstate_error(obj, data):
    saved = save(SINK, obj)
    path = data.draw(st.sampled_from(leaf_paths(saved)), label="path")
    load_or_reject(replaced(saved, path, data.draw(ANY_DATA, label="new value")))


# -- a realistic device: a 16550A in the shape of QEMU's serial vmstate ------------------------

RX_FIFO_SIZE = 16
IIR_NO_INT = 0x01
LSR_THRE_TEMT = 0x60
MSR_RESET = 0xB0
MCR_OUT2 = 0x08
RX_TRIGGER_LEVELS = (1, 4, 8, 14)  # FCR bits 7:6


class VirtualTimerStub:
    """Stands in for vm.timers.VirtualTimer: the engine only sees `deadline_ns`."""

    def __init__(self) -> None:
        self.deadline_ns: int | None = None
        self.callback = "owned by the device, never saved"


class Serial:
    """Guest-visible 16550A state, laid out like QEMU's SerialState (hw/char/serial.c)."""

    def __init__(self) -> None:
        self.divider = 0
        self.rbr = 0
        self.ier = 0
        self.iir = IIR_NO_INT
        self.lcr = 0
        self.mcr = MCR_OUT2
        self.lsr = LSR_THRE_TEMT
        self.msr = MSR_RESET
        self.scr = 0
        self.fcr = 0
        self.thr_ipending = False
        self.recv_fifo = bytearray()
        self.fifo_timeout_timer = VirtualTimerStub()
        # Derived from fcr: not saved, recomputed by post_load.
        self.rx_trigger = 1

    def post_load(self) -> None:
        self.rx_trigger = RX_TRIGGER_LEVELS[self.fcr >> 6]


# Version 3 added fcr, as QEMU's serial did; version 1 snapshots are too old to load.
SERIAL = VMStateDescription(
    "serial",
    version=3,
    minimum_version=2,
    fields=[
        U16("divider"),
        *(U8(reg) for reg in ("rbr", "ier", "iir", "lcr", "mcr", "lsr", "msr", "scr")),
        U8("fcr", since=3),
    ],
    subsections=[
        Subsection(
            VMStateDescription("serial/thr_int", 1, 1, [Bool("thr_ipending")]),
            needed=lambda s: s.thr_ipending,
        ),
        Subsection(
            VMStateDescription(
                "serial/recv_fifo", 1, 1, [Fifo("recv_fifo", capacity=RX_FIFO_SIZE)]
            ),
            needed=lambda s: len(s.recv_fifo) > 0,
        ),
        Subsection(
            VMStateDescription(
                "serial/fifo_timeout_timer",
                1,
                1,
                [Struct("fifo_timeout_timer", [OptionalInt("deadline_ns")])],
            ),
            needed=lambda s: s.fifo_timeout_timer.deadline_ns is not None,
        ),
    ],
    post_load=Serial.post_load,
)


def busy_serial() -> Serial:
    uart = Serial()
    uart.lcr, uart.ier, uart.fcr, uart.lsr = 0x03, 0x05, 0xC7, 0x61
    uart.recv_fifo += b"hello"
    uart.fifo_timeout_timer.deadline_ns = 1_234_567
    return uart


def test_an_idle_uart_saves_no_subsections():
    assert save(SERIAL, Serial())["subsections"] == []


def test_a_busy_uart_round_trips_through_msgpack_with_its_fifo_and_timer():
    uart = busy_serial()
    data = msgpack.unpackb(msgpack.packb(save(SERIAL, uart)), raw=False)
    assert [s["name"] for s in data["subsections"]] == [
        "serial/recv_fifo",
        "serial/fifo_timeout_timer",
    ]
    loaded = Serial()
    timer = loaded.fifo_timeout_timer
    load(SERIAL, loaded, data)
    assert same(covered_state(SERIAL, loaded), covered_state(SERIAL, uart))
    assert loaded.fifo_timeout_timer is timer and timer.deadline_ns == 1_234_567
    assert loaded.rx_trigger == 14  # post_load recomputed it from fcr 0xC7


def test_a_version_2_uart_snapshot_loads_with_fcr_at_its_reset_value():
    data = save(SERIAL, busy_serial())
    del data["fields"]["fcr"]
    data["version"] = 2
    loaded = Serial()
    load(SERIAL, loaded, data)
    assert (loaded.lcr, loaded.fcr, loaded.rx_trigger) == (0x03, 0, 1)
    assert loaded.recv_fifo == bytearray(b"hello")


def test_a_uart_snapshot_with_an_overfull_fifo_is_rejected_without_touching_the_uart():
    data = save(SERIAL, busy_serial())
    data["subsections"][0]["fields"]["recv_fifo"] = bytes(RX_FIFO_SIZE + 1)
    loaded = Serial()
    with raises_vmstate(r"load serial/recv_fifo\.recv_fifo: length 17 exceeds the maximum 16"):
        load(SERIAL, loaded, data)
    assert same(covered_state(SERIAL, loaded), covered_state(SERIAL, Serial()))


def test_the_uart_description_covers_every_guest_visible_register():
    assert field_names(SERIAL) == {
        "divider",
        *("rbr", "ier", "iir", "lcr", "mcr", "lsr", "msr", "scr", "fcr"),
        "thr_ipending",
        "recv_fifo",
        "fifo_timeout_timer.deadline_ns",
    }


def test_an_error_message_is_bounded_even_for_huge_hostile_values():
    with pytest.raises(VMStateError) as caught:
        load(SERIAL, Serial(), {**save(SERIAL, Serial()), "name": "x" * 100_000})
    assert len(str(caught.value)) < 200
