"""`python -m fuzzer run`: every exit status, the output streams, and one-line errors."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from vm.asm import assemble

ROOT = Path(__file__).resolve().parents[2]

PASS_S = """
    .globl _start
_start:
    li   t0, 0x10000000
    li   t1, 'o'
    sb   t1, 0(t0)
    li   t1, 'k'
    sb   t1, 0(t0)
    li   t0, 0x100000
    li   t1, 0x5555
    sw   t1, 0(t0)
"""
FAIL_S = """
    li   t0, 0x100000
    li   t1, (42 << 16) | 0x3333
    sw   t1, 0(t0)
"""
SPIN_S = "1: j 1b\n"
WFI_S = "wfi\n"
LOOP_S = "csrw mtvec, zero\necall\n"  # the handler at 0 is unmapped: a fault loop
RESET_S = "li t0, 0x100000\nli t1, 0x7777\nsw t1, 0(t0)\n"


def detfuzz(*args: str | Path, timeout: float = 60) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [sys.executable, "-m", "fuzzer", *map(str, args)],
        cwd=ROOT,
        capture_output=True,
        timeout=timeout,
    )


def write(tmp_path: Path, name: str, content: str | bytes) -> Path:
    path = tmp_path / name
    if isinstance(content, str):
        path.write_text(content)
    else:
        path.write_bytes(content)
    return path


def assert_one_line_error(proc: subprocess.CompletedProcess[bytes]) -> str:
    assert proc.returncode == 2, proc.stderr
    err = proc.stderr.decode()
    assert "Traceback" not in err
    assert err.count("\n") == 1 and err.endswith("\n"), err
    assert proc.stdout == b""
    return err


def test_a_passing_assembly_program_exits_zero_and_prints_the_uart_output(tmp_path):
    proc = detfuzz("run", write(tmp_path, "pass.S", PASS_S))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == b"ok"
    err = proc.stderr.decode()
    assert "stop=finisher-pass" in err
    assert "icount=15" in err  # six reset-vector instructions + nine of the program
    assert "Traceback" not in err


def test_a_failing_program_exits_one_with_the_guest_code_on_stderr(tmp_path):
    proc = detfuzz("run", write(tmp_path, "fail.s", FAIL_S))
    assert proc.returncode == 1
    assert "stop=finisher-fail" in proc.stderr.decode()
    assert "code=42" in proc.stderr.decode()


@pytest.mark.parametrize(
    ("source", "stop"),
    [
        (SPIN_S, "stop=budget"),
        (WFI_S, "stop=wfi-idle"),
        (LOOP_S, "stop=fault-loop"),
        (RESET_S, "stop=finisher-reset"),
    ],
    ids=["budget", "wfi", "fault-loop", "reset"],
)
def test_stopping_without_pass_or_fail_exits_three(tmp_path, source, stop):
    proc = detfuzz("run", "--budget", "5000", write(tmp_path, "p.S", source))
    assert proc.returncode == 3, proc.stderr
    assert stop in proc.stderr.decode()


def test_the_budget_option_bounds_the_run(tmp_path):
    proc = detfuzz("run", "--budget", "1_000", write(tmp_path, "spin.S", SPIN_S))
    assert proc.returncode == 3
    assert "icount=1000" in proc.stderr.decode()


def test_a_flat_binary_runs(tmp_path):
    proc = detfuzz("run", write(tmp_path, "pass.bin", assemble(PASS_S)))
    assert proc.returncode == 0 and proc.stdout == b"ok"


def test_an_elf_runs(tmp_path):
    from .test_loader_boot import make_elf

    code = assemble(PASS_S)
    proc = detfuzz(
        "run", write(tmp_path, "pass.elf", make_elf([(0x8000_0000, len(code), code, 5)]))
    )
    assert proc.returncode == 0 and proc.stdout == b"ok"


def test_shift_and_ram_size_options_are_accepted(tmp_path):
    proc = detfuzz("run", "--shift", "7", "--ram-size", "4M", write(tmp_path, "p.S", PASS_S))
    assert proc.returncode == 0, proc.stderr


def test_the_hello_corpus_program_passes():
    proc = detfuzz("run", ROOT / "corpora" / "programs" / "hello.S")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith(b"hello from detfuzz, minstret = 0x")


def test_a_missing_program_file_exits_two_with_one_line(tmp_path):
    err = assert_one_line_error(detfuzz("run", tmp_path / "nope.S"))
    assert "nope.S" in err


def test_a_directory_as_program_exits_two(tmp_path):
    assert_one_line_error(detfuzz("run", tmp_path))


def test_an_assembly_error_exits_two_naming_the_line(tmp_path):
    err = assert_one_line_error(detfuzz("run", write(tmp_path, "bad.S", "nop\nfrobnicate a0\n")))
    assert "line 2" in err


@pytest.mark.parametrize(
    "content",
    [b"\x7fELF" + bytes(10), b"\x7fELF\x02\x01\x01" + bytes(60), b""],
    ids=["truncated-elf", "elf64", "empty"],
)
def test_a_bad_program_file_exits_two(tmp_path, content):
    assert_one_line_error(detfuzz("run", write(tmp_path, "bad.elf", content)))


def test_non_utf8_assembly_exits_two(tmp_path):
    assert_one_line_error(detfuzz("run", write(tmp_path, "bin.S", b"\xff\xfe\x00garbage")))


@pytest.mark.parametrize(
    "args",
    [
        ["run"],
        [],
        ["frob"],
        ["run", "--budget", "lots", "x.S"],
        ["run", "--budget", "-1", "x.S"],
        ["run", "--shift", "11", "x.S"],
        ["run", "--shift", "-1", "x.S"],
        ["run", "--ram-size", "-8K", "x.S"],
        ["run", "--ram-size", "0", "x.S"],
        ["run", "--ram-size", "4G", "x.S"],
        ["run", "--ram-size", "big", "x.S"],
        ["run", "--nope", "x.S"],
    ],
    ids=[
        "no-program",
        "no-command",
        "bad-command",
        "budget-text",
        "budget-negative",
        "shift-high",
        "shift-negative",
        "ram-negative",
        "ram-zero",
        "ram-too-big",
        "ram-text",
        "unknown-option",
    ],
)
def test_bad_usage_exits_two_with_one_line_and_no_traceback(tmp_path, args):
    (tmp_path / "x.S").write_text(PASS_S)
    proc = subprocess.run(
        [sys.executable, "-m", "fuzzer", *args],
        cwd=tmp_path,
        capture_output=True,
        timeout=60,
        env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"},
    )
    assert_one_line_error(proc)


def test_help_exits_zero():
    proc = detfuzz("run", "--help")
    assert proc.returncode == 0
    assert b"--budget" in proc.stdout
