"""Typed readers for the fuzzer's msgpack files (scenarios, reports): hostile input in,
checked Python values or a `WireError` out, never eval, pickle or import.

Each reader takes the value and `where` (a path such as `divergence.localisation.icount`)
for its message; a file format catches WireError and raises its own error type.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

import msgpack

T = TypeVar("T")


class WireError(ValueError):
    """A value of the wrong type, size or range, or undecodable bytes."""


def describe(value: object) -> str:
    text = repr(value)
    return f"{type(value).__name__} {text[:40]}{'...' if len(text) > 40 else ''}"


def read_map(value: object, where: str, keys: tuple[str, ...]) -> Mapping[str, Any]:
    """A map with exactly `keys`."""
    if not isinstance(value, dict):
        raise WireError(f"{where} must be a map, got {describe(value)}")
    unknown = [key for key in value if key not in keys]
    if unknown:
        raise WireError(f"{where}: unknown key {unknown[0]!r:.60}")
    missing = [key for key in keys if key not in value]
    if missing:
        raise WireError(f"{where}: missing key {missing[0]!r}")
    return value


def read_list(value: object, where: str, cap: int) -> list[Any]:
    if not isinstance(value, list):
        raise WireError(f"{where} must be a list, got {describe(value)}")
    if len(value) > cap:
        raise WireError(f"{where} has {len(value)} entries, at most {cap} allowed")
    return value


def read_int(value: object, where: str, low: int, high: int) -> int:
    if type(value) is not int:
        raise WireError(f"{where} must be an int, got {describe(value)}")
    if not low <= value <= high:
        raise WireError(f"{where} must be in {low}..{high}, got {value}")
    return value


def read_str(value: object, where: str, cap: int) -> str:
    if type(value) is not str:
        raise WireError(f"{where} must be a string, got {describe(value)}")
    if len(value) > cap:
        raise WireError(f"{where} is {len(value)} characters, at most {cap} allowed")
    return value


def read_bytes(value: object, where: str, cap: int) -> bytes:
    if type(value) is not bytes:
        raise WireError(f"{where} must be bytes, got {describe(value)}")
    if len(value) > cap:
        raise WireError(f"{where} is {len(value)} bytes, at most {cap} allowed")
    return value


def read_optional(value: object, read: Callable[[object], T]) -> T | None:
    return None if value is None else read(value)


def read_strs(value: object, where: str, *, count: int, chars: int) -> tuple[str, ...]:
    items = read_list(value, where, count)
    return tuple(read_str(item, f"{where}[{i}]", chars) for i, item in enumerate(items))


def read_enum(value: object, where: str, enum_type: type[T]) -> T:
    """A member of a string-valued enum, by value."""
    text = read_str(value, where, 64)
    try:
        return enum_type(text)  # type: ignore[call-arg]
    except ValueError:
        known = ", ".join(m.value for m in enum_type)  # type: ignore[attr-defined]
        raise WireError(f"{where} must be one of {known}; got {text!r:.40}") from None


def _no_ext(code: int, data: bytes) -> object:
    raise ValueError(f"unexpected msgpack extension type {code}")


def unpack_file(data: object, *, what: str, magic: bytes, max_bytes: int) -> tuple[int, object]:
    """Split `data` (header map {"magic", "format"}, then one body object) into (format,
    body), checking the magic and sizes; the body is not checked."""
    if not isinstance(data, bytes | bytearray | memoryview):
        raise WireError(f"a {what} is bytes, got {type(data).__name__}")
    if len(data) > max_bytes:
        raise WireError(f"{what} is {len(data)} bytes, at most {max_bytes} allowed")
    unpacker = msgpack.Unpacker(
        io.BytesIO(bytes(data)),
        raw=False,
        strict_map_key=False,
        ext_hook=_no_ext,
        max_buffer_size=max_bytes,
    )
    header = _unpack(unpacker, what, "header")
    if not isinstance(header, dict) or header.get("magic") != magic:
        raise WireError(f"not a detfuzz {what}: bad magic")
    header = read_map(header, f"{what} header", ("magic", "format"))
    version = read_int(header["format"], f"{what} format", 0, 1 << 32)
    body = _unpack(unpacker, what, "body")
    try:
        unpacker.unpack()
    except msgpack.OutOfData:
        return version, body
    except Exception:  # any trailing garbage is the same error
        pass
    raise WireError(f"{what} has data after its body")


def pack_file(*, magic: bytes, version: int, body: object) -> bytes:
    header = msgpack.packb({"magic": magic, "format": version}, use_bin_type=True)
    return header + msgpack.packb(body, use_bin_type=True)


def _unpack(unpacker: msgpack.Unpacker, what: str, part: str) -> object:
    try:
        return unpacker.unpack()
    except msgpack.OutOfData:
        raise WireError(f"not a detfuzz {what}: truncated {part}") from None
    except Exception as exc:  # msgpack's C decoder raises many types on hostile input
        raise WireError(f"not a detfuzz {what}: undecodable {part} ({exc})") from None
