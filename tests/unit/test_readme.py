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
