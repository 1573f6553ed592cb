"""Help menu windows: About, and the keyboard shortcuts. Both open without blocking the studio
(the preview keeps playing behind them)."""
from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QMessageBox, QWidget

PACKAGE = "flashtalk-studio"


def studio_version() -> str:
    try:
        return version(PACKAGE)
    except PackageNotFoundError:  # run from a source tree that was never installed
        return "development copy"


def open_about(parent: QWidget) -> QMessageBox:
    box = QMessageBox(QMessageBox.Information, "About FlashTalk Studio",
                      f"<b>FlashTalk Studio</b> {studio_version()}<br><br>A live talking avatar from one portrait "
                      "and your voice: preview, virtual camera and MP4 recording.<br>The engine runs the CPU "
                      "puppet backend anywhere, or the SoulX-FlashTalk diffusion model on GPUs.<br><br>"
                      "License: Apache-2.0", QMessageBox.Close, parent)
    box.setTextInteractionFlags(Qt.TextSelectableByMouse)
    box.open()
    return box


def open_shortcuts(parent: QWidget, shortcuts: dict[str, tuple[str, str]]) -> QMessageBox:
    """`shortcuts`: name -> (what it does, key sequence)."""
    rows = "".join(f"<tr><td><b>{keys}</b>&nbsp;&nbsp;</td><td>{what}</td></tr>" for what, keys in shortcuts.values())
    box = QMessageBox(QMessageBox.NoIcon, "Keyboard shortcuts", f"<table>{rows}</table>", QMessageBox.Close, parent)
    box.open()
    return box
