"""Dark and light themes that follow the operating system's colour scheme (Qt >= 6.5)."""
from __future__ import annotations

import pyqtgraph as pg
from PySide6.QtCore import Qt
from PySide6.QtGui import QColor, QGuiApplication, QPalette
from PySide6.QtWidgets import QApplication


def _dark_palette() -> QPalette:
    p = QPalette()
    base, window, text = QColor(30, 30, 32), QColor(43, 43, 46), QColor(230, 230, 230)
    for role, color in ((QPalette.Window, window), (QPalette.WindowText, text), (QPalette.Base, base),
                        (QPalette.AlternateBase, window), (QPalette.Text, text), (QPalette.Button, window),
                        (QPalette.ButtonText, text), (QPalette.ToolTipBase, base), (QPalette.ToolTipText, text),
                        (QPalette.Highlight, QColor(64, 128, 200)), (QPalette.HighlightedText, Qt.white),
                        (QPalette.Mid, QColor(90, 90, 95)), (QPalette.PlaceholderText, QColor(140, 140, 140))):
        p.setColor(role, color)
    p.setColor(QPalette.Disabled, QPalette.Text, QColor(120, 120, 120))
    p.setColor(QPalette.Disabled, QPalette.ButtonText, QColor(120, 120, 120))
    return p


def is_dark() -> bool:
    return QGuiApplication.styleHints().colorScheme() == Qt.ColorScheme.Dark


def apply_theme(app: QApplication) -> None:
    """Fusion style with a palette matching the OS scheme; graphs follow. Re-applied on change."""
    app.setStyle("Fusion")
    dark = is_dark()
    app.setPalette(_dark_palette() if dark else app.style().standardPalette())
    pg.setConfigOptions(background=(30, 30, 32) if dark else "w", foreground="#dddddd" if dark else "#333333",
                        antialias=False)


def follow_os_theme(app: QApplication) -> None:
    apply_theme(app)
    app.styleHints().colorSchemeChanged.connect(lambda _scheme: apply_theme(app))
