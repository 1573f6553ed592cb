"""First run: the studio finds its engine (source or bundle) and explains how to get the diffusion model."""
from __future__ import annotations

import sys
from pathlib import Path

from studio.engine_link.supervisor import engine_command


def test_engine_command_from_source():
    assert engine_command(sys.executable) == (sys.executable, ["-m", "engine"])


def test_engine_command_in_a_frozen_bundle(monkeypatch, tmp_path):
    monkeypatch.setattr(sys, "frozen", True, raising=False)
    monkeypatch.setattr(sys, "executable", str(tmp_path / "flashtalk-studio"))
    program, prefix = engine_command(sys.executable)
    assert Path(program) == tmp_path / ("flashtalk.exe" if sys.platform == "win32" else "flashtalk")
    assert prefix == []


def test_first_run_guide_shows_until_a_model_or_remote_engine_is_set(qtbot):
    from studio.widgets.engine_panel import EnginePanel
    panel = EnginePanel()
    qtbot.addWidget(panel)
    assert not panel.guide.isHidden() and "flashtalk models download" in panel.guide.text()
    panel.model_dir.setText("/models/SoulX-FlashTalk-14B")
    assert panel.guide.isHidden()
    panel.model_dir.setText("")
    panel.attach.setChecked(True)
    assert panel.guide.isHidden()
