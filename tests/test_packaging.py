"""Packaging: desktop entry, icon, container recipe, documented commands, and the PyInstaller bundle.

The bundle test builds the real one-folder bundle (about a minute on 2 cores, 500 MB), so it is
marked slow: `pytest -m slow tests/test_packaging.py`.
"""
from __future__ import annotations

import configparser
import importlib.util
import json
import os
import re
import shlex
import subprocess
import sys
import time
import tomllib
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from engine.cli import build_parser

ROOT = Path(__file__).resolve().parents[1]
PACKAGING = ROOT / "packaging"
DOCS = [PACKAGING / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def load_draw_icon():
    spec = importlib.util.spec_from_file_location("draw_icon", PACKAGING / "draw_icon.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_desktop_entry_launches_the_studio_script_with_our_icon():
    entry = configparser.ConfigParser(interpolation=None)
    entry.optionxform = str  # keys are case-sensitive
    entry.read(PACKAGING / "flashtalk-studio.desktop")
    section = entry["Desktop Entry"]
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert section["Type"] == "Application" and section["Terminal"] == "false"
    assert shlex.split(section["Exec"])[0] in scripts
    assert (PACKAGING / f"{section['Icon']}.png").is_file()
    assert (PACKAGING / f"{section['Icon']}.svg").is_file()
    assert section["Categories"].endswith(";") and "AudioVideo" in section["Categories"]


def test_icon_files_are_what_draw_icon_makes():
    draw_icon = load_draw_icon()
    png = Image.open(PACKAGING / "flashtalk-studio.png")
    assert png.size == (256, 256) and png.mode == "RGBA"
    fresh = np.asarray(draw_icon.draw_png(), dtype=np.int16)
    assert np.abs(np.asarray(png, dtype=np.int16) - fresh).max() <= 1
    assert png.getpixel((0, 0))[3] == 0 and png.getpixel((128, 128))[3] == 255  # rounded, opaque
    assert (PACKAGING / "flashtalk-studio.svg").read_text() == draw_icon.svg_text()
    svg = ET.parse(PACKAGING / "flashtalk-studio.svg").getroot()
    assert svg.get("viewBox") == "0 0 256 256"


def dockerfile_instruction(name: str) -> list[str]:
    lines = (PACKAGING / "Dockerfile.engine").read_text().splitlines()
    found = [line[len(name):].strip() for line in lines if line.startswith(name + " ")]
    assert len(found) == 1, f"one {name} expected"
    return json.loads(found[0])


def test_container_entry_point_is_a_valid_remote_serve_command():
    argv = dockerfile_instruction("ENTRYPOINT") + dockerfile_instruction("CMD")
    assert argv[0] == "flashtalk"
    args = build_parser().parse_args(argv[1:])
    assert args.command == "serve" and args.socket == "tcp://0.0.0.0:47600" and args.allow_remote
    assert args.backend == "flashtalk" and str(args.model).startswith("/models/")
    text = (PACKAGING / "Dockerfile.engine").read_text()
    assert re.search(r"^FROM \$\{CUDA_IMAGE\}", text, re.M) and "nvidia/cuda:" in text
    assert "pip install '.[flashtalk]'" in text
    ignore = (PACKAGING / "Dockerfile.engine.dockerignore").read_text().split()
    assert ignore[ignore.index("*") + 1:].count("!engine/") == 1  # .venv and build outputs stay out


def documented_commands() -> list[tuple[str, list[str]]]:
    """Every `flashtalk ...` and `torchrun ... -m engine serve ...` line in the docs' code blocks."""
    found = []
    for doc in DOCS:
        blocks = re.findall(r"```(?:bash|sh)\n(.*?)```", doc.read_text(), re.S)
        for block in blocks:
            for line in block.replace("\\\n", " ").splitlines():
                words = shlex.split(line, comments=True)
                for i, word in enumerate(words):
                    is_cli = word == "flashtalk" or (word.endswith("/flashtalk") and ":" not in word)
                    if is_cli and i + 1 < len(words):
                        skip = 2 if words[i - 1] == "--entrypoint" else 1  # docker: then the image
                        found.append((doc.name, words[i + skip:]))
                        break
                    if word == "-m" and words[i + 1:i + 2] == ["engine"]:
                        found.append((doc.name, words[i + 2:]))
                        break
    return found


def test_every_documented_command_parses():
    commands = documented_commands()
    assert any(argv[0] == "serve" and "--gpus" in argv for _, argv in commands)  # the N-GPU form
    parser = build_parser()
    for doc, argv in commands:
        argv = [a for a in argv if a not in ("&", "|")]
        try:
            parser.parse_args(argv)
        except SystemExit:
            pytest.fail(f"{doc}: `flashtalk {' '.join(argv)}` does not parse")


def test_spec_bundles_files_that_exist():
    spec = (PACKAGING / "studio.spec").read_text()
    assert '"assets"' in spec and "shape_predictor_68_face_landmarks.dat" in spec
    for name in ("portrait.png", "speech.wav"):
        assert (ROOT / "assets" / name).is_file()
    location = importlib.util.find_spec("face_recognition_models").submodule_search_locations[0]
    assert (Path(location) / "models" / "shape_predictor_68_face_landmarks.dat").is_file()


@pytest.fixture(scope="module")
def bundle(tmp_path_factory) -> Path:
    pyinstaller = Path(sys.executable).with_name("pyinstaller")
    if not pyinstaller.exists():
        pytest.skip("pyinstaller is not installed (pip install pyinstaller)")
    work = tmp_path_factory.mktemp("pyinstaller")
    proc = subprocess.run([str(pyinstaller), str(PACKAGING / "studio.spec"), "--noconfirm",
                           "--distpath", str(work / "dist"), "--workpath", str(work / "build")],
                          capture_output=True, text=True, cwd=ROOT, timeout=1500)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return work / "dist" / "flashtalk-studio"


def bundle_env(tmp_path: Path) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "VIRTUAL_ENV"))}
    env.update(QT_QPA_PLATFORM="offscreen", HOME=str(tmp_path), XDG_RUNTIME_DIR=str(tmp_path))
    return env


@pytest.mark.slow
def test_bundle_renders_a_clip_with_the_puppet(bundle, tmp_path):
    from avkit.audio_decode import load_audio
    from avkit.mp4_writer import probe_mp4

    out = tmp_path / "clip.mp4"
    # run from an unrelated folder: the bundle must find its own assets and landmark model
    proc = subprocess.run([str(bundle / "flashtalk"), "render", "--out", str(out), "--quiet"],
                          capture_output=True, text=True, cwd=tmp_path, env=bundle_env(tmp_path),
                          timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    info = probe_mp4(out)
    speech_s = load_audio(ROOT / "assets" / "speech.wav").size / 16000
    assert info.fps == 25 and info.video_frames >= int(speech_s * 25)
    assert abs(info.audio_samples / info.audio_rate - speech_s) < 0.2
    doctor = subprocess.run([str(bundle / "flashtalk"), "doctor", "--json"], capture_output=True,
                            text=True, cwd=tmp_path, env=bundle_env(tmp_path), timeout=120)
    assert doctor.returncode == 0 and json.loads(doctor.stdout)["can_run"], doctor.stdout


@pytest.mark.slow
def test_bundle_studio_starts_offscreen(bundle, tmp_path):
    proc = subprocess.Popen([str(bundle / "flashtalk-studio"), "--settings", str(tmp_path / "studio.ini")],
                            stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, cwd=tmp_path, env=bundle_env(tmp_path))
    time.sleep(10)
    alive = proc.poll() is None
    if alive:
        proc.terminate()
    try:
        _, err = proc.communicate(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
        _, err = proc.communicate()
    assert alive or proc.returncode == 0, err[-3000:]
    assert "Traceback" not in err, err[-3000:]
