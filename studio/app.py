"""`flashtalk-studio`: parse arguments, build the application, preload, start the engine.

flashtalk-studio [--portrait IMG] [--audio-file AUDIO] [--backend B] [--model DIR]
                 [--engine ADDR] [--token-file F] [--record OUT.mp4]
                 [--quality auto|fixed|PROFILE] [--target-latency S]
                 [--quit-when-done [--pace file|realtime]] [--metrics-json FILE]
flashtalk-studio --doctor [json]      the desktop's checks (studio.desktop_checks), no window
"""
from __future__ import annotations

import argparse
import math
import os
import sys
from dataclasses import replace
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
    p.add_argument("--pace", choices=("file", "realtime"), default="file",
                   help="with --quit-when-done: 'file' (default) keeps every frame whatever it costs; "
                        "'realtime' plays the file as a live source would, skips allowed")
    p.add_argument("--quality", metavar="auto|fixed|PROFILE",
                   help="live sessions: 'auto' keeps up (the engine lowers quality when it must), 'fixed' "
                        "is quality first, or one of the engine's profile names (default: last used)")
    p.add_argument("--target-latency", metavar="S",
                   help="live sessions: target seconds from capture to presented (at least one chunk of "
                        "audio; default: one chunk + 0.5 s)")
    p.add_argument("--metrics-json", type=Path, metavar="FILE",
                   help="at exit, write the studio's measurements (capture -> presented latency per "
                        "second, p50/p95/max, skipped seconds, profile, real-time factor) to FILE")
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
    if args.pace != "file" and not args.quit_when_done:
        raise UsageError("--pace needs --quit-when-done: without it every session is live already")
    if args.target_latency is not None:
        args.target_latency = _seconds(args.target_latency)
    if args.quality is not None and not args.quality.strip():
        raise UsageError("--quality: give 'auto', 'fixed' or a profile name")
    if args.metrics_json is not None and not args.metrics_json.parent.is_dir():
        raise UsageError(f"--metrics-json {args.metrics_json}: no such folder {args.metrics_json.parent}")


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and value > 0):
        raise UsageError(f"--target-latency {text}: give a positive number of seconds (at least one chunk of audio)")
    return value


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
        model.mode = "live" if args.pace == "realtime" else "file"
        model.quit_when_done = True
    if args.quality is not None or args.target_latency is not None:
        window.set_live_choice(replace(model.live, quality=args.quality or model.live.quality,
                                       target_latency_s=args.target_latency or model.live.target_latency_s),
                               remember=False)
    if args.metrics_json:
        model.playout.log_pace = args.pace
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
    report: list[dict | None] = [None]  # --metrics-json: taken when the session is over, written at exit

    def take_report() -> None:
        """Once: when the file has played (quit-when-done), else when the window closes."""
        model = window.model
        if report[0] is None and args.metrics_json and model.playout.log is not None and not model.refused_settings:
            report[0] = model.playout.log_report()

    def on_done(code: int) -> None:
        exit_code[0] = code
        model = window.model
        if model.refused_settings:  # nothing was made: one line, no recording, no metrics
            print(f"flashtalk-studio: the engine refused the session: {model.refused_settings}", file=sys.stderr)
        else:
            if model.failure:
                print(f"flashtalk-studio: stopped before the end of the audio file: {model.failure}",
                      file=sys.stderr)
            for error in model.outputs.errors:
                print(f"flashtalk-studio: {error}", file=sys.stderr)
        take_report()
        window.close()
        app.quit()

    app.aboutToQuit.connect(take_report)
    window.model.done.connect(on_done)
    window.show()
    try:
        _apply_args(window, args)
    except ValueError as exc:  # AudioFileError and friends: one line
        print(f"flashtalk-studio: {exc}", file=sys.stderr)
        window.close()
        return 2
    app.exec()
    if args.metrics_json and report[0] is not None:
        window.model.playout.log.write(args.metrics_json, report[0])
    return exit_code[0]


if __name__ == "__main__":
    sys.exit(main())
