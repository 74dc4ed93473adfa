"""The README's record/replay example runs as written (the front door stays true)."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def python_blocks(text: str) -> list[str]:
    return re.findall(r"```python\n(.*?)```", text, flags=re.S)


def test_the_record_replay_example_runs(monkeypatch):
    text = (ROOT / "README.md").read_text()
    section = text[text.index("### Record and replay") :]
    block = python_blocks(section)[0]
    monkeypatch.chdir(ROOT)
    exec(compile(block, "README.md", "exec"), {})  # our own README, not input


def test_the_user_device_example_runs_as_written(tmp_path, monkeypatch):
    text = (ROOT / "README.md").read_text()
    section = text[text.index("### Fuzzing your own device") :]
    device, test = python_blocks(section)[:2]
    assert device.startswith("# countdown.py") and test.startswith("# test_countdown.py")
    (tmp_path / "countdown.py").write_text(device)
    monkeypatch.syspath_prepend(str(tmp_path))
    namespace: dict[str, object] = {}
    exec(compile(test, "test_countdown.py", "exec"), namespace)  # our own README
    namespace["test_countdown_is_deterministic"]()  # type: ignore[operator]
