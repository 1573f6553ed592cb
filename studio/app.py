"""`flashtalk-studio`: parse arguments, build the application, preload, start the engine.

flashtalk-studio [--portrait IMG] [--audio-file AUDIO] [--backend B] [--model DIR]
                 [--engine ADDR] [--token-file F] [--record OUT.mp4] [--quit-when-done]
flashtalk-studio --doctor [json]      the desktop's checks (studio.desktop_checks), no window
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from studio.display import NO_DISPLAY_FIX, has_display
from studio.engine_link.options import BACKENDS


class UsageError(Exception):
    """A mistake on the command line: one line, exit status 2."""


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="flashtalk-studio", description="Live talking-avatar studio.")
    p.add_argument("--portrait", type=Path, help="portrait image to load (PNG, JPEG, WebP)")
    p.add_argument("--audio-file", type=Path, help="audio file to play into the avatar")
    p.add_argument("--backend", choices=BACKENDS, help="engine backend to start (default: last used)")
    p.add_argument("--model", type=Path, help="SoulX-FlashTalk-14B folder (flashtalk backend)")
    p.add_argument("--engine", metavar="ADDR", help="attach to an engine already running at ADDR")
    p.add_argument("--token-file", type=Path, help="token file of the --engine (default: beside the socket)")
    p.add_argument("--record", type=Path, metavar="OUT.mp4", help="record the session to an MP4")
    p.add_argument("--quit-when-done", action="store_true",
                   help="exit (status 0) once the audio file has played and everything is written")
    p.add_argument("--settings", type=Path, help="use this INI file for settings instead of the user's")
    p.add_argument("--doctor", nargs="?", const="text", choices=("text", "json"),
                   help="check the microphone, virtual camera and microphone, text to speech and display "
                        "here, say how to fix what is missing, and exit (json: for scripts)")
    args = p.parse_args(argv)
    _check_args(args)
    return args


def _check_args(args: argparse.Namespace) -> None:
    for name in ("portrait", "audio_file", "model", "token_file"):
        path = getattr(args, name)
        if path is not None and not path.exists():
            raise UsageError(f"--{name.replace('_', '-')} {path}: no such file or folder")
    if args.quit_when_done and args.audio_file is None:
        raise UsageError("--quit-when-done needs --audio-file: it quits once that file has played")
    if args.record is not None and args.record.suffix.lower() != ".mp4":
        raise UsageError(f"--record {args.record}: the recording must be an .mp4 file")


def _apply_args(window, args: argparse.Namespace) -> None:
    """Preload what the command line (or the last run) asks for and start the engine."""
    from avkit.portrait_image import PortraitImageError, load_portrait
    from studio.outputs.recorder import Recorder

    model, options = window.model, window.model.link.options
    if args.backend:
        options.backend = args.backend
    if args.model:
        options.model_dir = str(args.model)
    if args.engine:
        options.attach_address, options.token_file = args.engine, str(args.token_file or "")
    elif args.backend or args.model:
        options.attach_address = ""
    window.engine.set_options(options)
    if args.quit_when_done:
        model.mode = "file"
        model.quit_when_done = True
    if args.record:  # kept to the end, even after a failure: its error decides the exit status
        model.outputs.add(Recorder(args.record))
    portrait = args.portrait or (Path(window.settings.last_portrait) if window.settings.last_portrait else None)
    if portrait is not None and not portrait.exists():
        portrait = None  # the last run's portrait was moved or deleted
    if args.quit_when_done and portrait is None:  # nothing would ever play: say so instead of waiting
        raise ValueError("--quit-when-done needs a portrait: pass --portrait IMG")
    if portrait is not None and args.quit_when_done:  # a script gets the one-line reason at once
        try:
            load_portrait(portrait)
        except PortraitImageError as exc:
            raise ValueError(f"--portrait {portrait}: {exc}") from None
    if portrait is not None:
        model.set_portrait(portrait)
    if args.audio_file:
        model.sources.load_file_now(args.audio_file)
        model.sources.select("file")
        model.autoplay_file = True
    elif window.settings.last_audio_file and Path(window.settings.last_audio_file).exists():
        model.sources.load_file(window.settings.last_audio_file)
    model.link.start(options)


def build(args: argparse.Namespace):
    """QApplication, theme, model and window (importable for tests)."""
    from PySide6.QtWidgets import QApplication

    from studio.engine_link.link import EngineLink
    from studio.main_window import MainWindow
    from studio.session.session_model import SessionModel
    from studio.settings_store import load_settings, open_store
    from studio.theme import follow_os_theme

    app = QApplication.instance() or QApplication(sys.argv[:1])
    app.setApplicationName("FlashTalk Studio")
    follow_os_theme(app)
    store = open_store(str(args.settings) if args.settings else None)
    model = SessionModel(EngineLink(), output_device=load_settings(store).output_device or None)
    window = MainWindow(model, store)
    return app, window


def main(argv: list[str] | None = None) -> int:
    try:
        args = parse_args(argv)
    except UsageError as exc:
        print(f"flashtalk-studio: {exc}", file=sys.stderr)
        return 2
    if args.doctor:
        from studio.desktop_checks import run_doctor
        return run_doctor(as_json=args.doctor == "json")
    if not has_display() and "QT_QPA_PLATFORM" not in os.environ:
        print(f"flashtalk-studio: no display found: {NO_DISPLAY_FIX}", file=sys.stderr)
        return 2
    app, window = build(args)
    exit_code = [0]

    def on_done(code: int) -> None:
        exit_code[0] = code
        if window.model.failure:
            print(f"flashtalk-studio: stopped before the end of the audio file: {window.model.failure}",
                  file=sys.stderr)
        for error in window.model.outputs.errors:
            print(f"flashtalk-studio: {error}", file=sys.stderr)
        window.close()
        app.quit()

    window.model.done.connect(on_done)
    window.show()
    try:
        _apply_args(window, args)
    except ValueError as exc:  # AudioFileError and friends: one line
        print(f"flashtalk-studio: {exc}", file=sys.stderr)
        window.close()
        return 2
    app.exec()
    return exit_code[0]


if __name__ == "__main__":
    sys.exit(main())
