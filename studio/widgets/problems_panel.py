"""The problems that wait for the user, above the preview: what happened in plain words, what to
do, and each fix command in a box with its own Copy button. Hidden while there is none. Several
at once scroll within a bounded height (the newest on top), so they cannot push the window past
a laptop screen."""
from __future__ import annotations

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QFontDatabase, QGuiApplication
from PySide6.QtWidgets import (
    QFrame,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QScrollArea,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from studio.session.problems_model import Problem

PANEL_STYLE = "#problems { border: 1px solid #d9534f; border-radius: 4px; background: rgba(217, 83, 79, 30); }"
MAX_HEIGHT = 120  # px: one problem with two commands (112 px in the default font); more problems scroll


class ProblemCard(QWidget):
    dismissed = Signal(str)  # the problem's key

    def __init__(self, problem: Problem, parent=None):
        super().__init__(parent)
        self.problem = problem
        self.text = QLabel(problem.text)
        self.text.setWordWrap(True)
        self.text.setTextInteractionFlags(self.text.textInteractionFlags() | Qt.TextSelectableByMouse)
        font = self.text.font()
        font.setBold(True)
        self.text.setFont(font)
        if problem.detail:
            self.text.setToolTip(problem.detail)
        close = QToolButton(text="✕", autoRaise=True, toolTip="dismiss")
        close.clicked.connect(lambda: self.dismissed.emit(problem.key))
        head = QHBoxLayout()
        head.addWidget(self.text, 1)
        head.addWidget(close)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(6, 4, 6, 4)
        layout.addLayout(head)
        self.fix = QLabel(problem.fix)
        self.fix.setWordWrap(True)
        self.fix.setTextInteractionFlags(self.fix.textInteractionFlags() | Qt.TextSelectableByMouse)
        self.fix.setVisible(bool(problem.fix))
        layout.addWidget(self.fix)
        self.command_boxes: list[QLineEdit] = []
        self.copy_buttons: list[QPushButton] = []
        mono = QFontDatabase.systemFont(QFontDatabase.FixedFont)
        for command in problem.commands:
            box = QLineEdit(command, readOnly=True)
            box.setFont(mono)
            box.setCursorPosition(0)
            copy = QPushButton("Copy")
            copy.setToolTip("copy this command, then paste it into a terminal")
            copy.clicked.connect(lambda _checked=False, text=command: QGuiApplication.clipboard().setText(text))
            row = QHBoxLayout()
            row.addWidget(box, 1)
            row.addWidget(copy)
            layout.addLayout(row)
            self.command_boxes.append(box)
            self.copy_buttons.append(copy)


class ProblemsPanel(QFrame):
    dismissed = Signal(str)  # a problem's key: the user closed it

    def __init__(self, parent=None):
        super().__init__(parent)
        self.setObjectName("problems")
        self.setStyleSheet(PANEL_STYLE)
        self.cards: list[ProblemCard] = []
        self._cards = QWidget()
        self._cards.setObjectName("problem-cards")
        self._cards.setStyleSheet("#problem-cards { background: transparent; }")
        self._layout = QVBoxLayout(self._cards)
        self._layout.setContentsMargins(0, 0, 0, 0)
        self._layout.setSpacing(2)
        self.scroll = QScrollArea(widgetResizable=True, frameShape=QFrame.NoFrame)
        self.scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarAlwaysOff)
        self.scroll.setWidget(self._cards)
        self.scroll.viewport().setAutoFillBackground(False)
        outer = QVBoxLayout(self)
        outer.setContentsMargins(2, 2, 2, 2)
        outer.addWidget(self.scroll)
        self.setVisible(False)

    def resizeEvent(self, event) -> None:
        super().resizeEvent(event)
        self._fit()

    def _fit(self) -> None:
        """As tall as the cards at this width, up to MAX_HEIGHT (then they scroll)."""
        width = self.scroll.viewport().width() or self.width()
        layout = self._layout
        wanted = layout.heightForWidth(width) if layout.hasHeightForWidth() else layout.sizeHint().height()
        height = min(max(wanted, 0), MAX_HEIGHT)
        if self.scroll.height() != height:
            self.scroll.setFixedHeight(height)

    def show_problems(self, problems: list[Problem]) -> None:
        for card in self.cards:
            self._layout.removeWidget(card)
            card.setParent(None)  # gone from the screen now, not at the next idle moment
            card.deleteLater()
        self.cards = []
        for problem in reversed(problems):  # the newest on top: in view even when older ones scroll
            card = ProblemCard(problem)
            card.dismissed.connect(self.dismissed)
            self._layout.addWidget(card)
            self.cards.append(card)
        self.setVisible(bool(problems))
        self._fit()
