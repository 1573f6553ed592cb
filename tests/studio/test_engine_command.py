"""The studio starts its engine with `python -m engine`, or the bundled `flashtalk` when frozen."""
from __future__ import annotations

import sys
from pathlib import Path

from studio.engine_supervisor import engine_command


def test_engine_command_from_source():
    assert engine_command(sys.executable) == (sys.executable, ["-m", "engine"])


def test_engine_command_in_a_frozen_bundle(monkeypatch, tmp_path):
    monkeypatch.setattr(sys, "frozen", True, raising=False)
    monkeypatch.setattr(sys, "executable", str(tmp_path / "flashtalk-studio"))
    program, prefix = engine_command(sys.executable)
    assert Path(program) == tmp_path / ("flashtalk.exe" if sys.platform == "win32" else "flashtalk")
    assert prefix == []
