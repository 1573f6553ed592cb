"""Rebuild the default assets from sources we may ship: assets/portrait.png and assets/speech.wav.

portrait.png: the public-domain NASA astronaut photo bundled with scikit-image, cropped around
the face and scaled to 512x512. speech.wav: three sentences spoken by espeak-ng, resampled by sox
to 16 kHz mono, separated by pauses (so tests and demos see the mouth close in silence).

Run: .venv/bin/python scripts/make_assets.py   (needs scikit-image, Pillow, espeak-ng, sox)
"""
from __future__ import annotations

import subprocess
import tempfile
import wave
from pathlib import Path

import numpy as np

ASSETS = Path(__file__).resolve().parents[1] / "assets"

PORTRAIT_SIZE = 512
PORTRAIT_CROP = (72, 0, 372, 300)  # x0, y0, x1, y1 in the 512x512 astronaut photo: head and shoulders
MAX_PORTRAIT_BYTES = 500_000

SAMPLE_RATE = 16_000
SENTENCES = (
    "Hello, and welcome to FlashTalk Studio.",
    "One photo and your voice make a talking video.",
    "Speak, and watch my lips move.",
)
VOICE = "en-us"
WORDS_PER_MINUTE = 160
PAUSE_S = 0.8  # between sentences
EDGE_SILENCE_S = 0.4  # before the first and after the last sentence
SILENCE_LEVEL = 0.003  # |sample| below this at a sentence's ends is trimmed
PEAK = 0.7  # peak amplitude after normalisation (about -3 dBFS)


def make_portrait(path: Path) -> None:
    from PIL import Image
    from skimage.data import astronaut

    image = Image.fromarray(astronaut()).crop(PORTRAIT_CROP)
    image = image.resize((PORTRAIT_SIZE, PORTRAIT_SIZE), Image.LANCZOS)
    image.save(path, optimize=True)
    size = path.stat().st_size
    if size > MAX_PORTRAIT_BYTES:
        raise SystemExit(f"{path} is {size} bytes, more than {MAX_PORTRAIT_BYTES}")


def speak(text: str, workdir: Path, index: int) -> np.ndarray:
    """espeak-ng -> sox (16 kHz mono 16-bit) -> float32 samples."""
    raw = workdir / f"sentence{index}_raw.wav"
    resampled = workdir / f"sentence{index}.wav"
    subprocess.run(["espeak-ng", "-v", VOICE, "-s", str(WORDS_PER_MINUTE), "-w", str(raw), text],
                   check=True)
    subprocess.run(["sox", "-D", str(raw), "-r", str(SAMPLE_RATE), "-c", "1", "-b", "16",  # -D: no dither,
                    str(resampled)], check=True)  # so the file is the same on every run
    with wave.open(str(resampled), "rb") as wav:
        pcm = np.frombuffer(wav.readframes(wav.getnframes()), dtype="<i2")
    audio = pcm.astype(np.float32) / 32768.0
    voiced = np.flatnonzero(np.abs(audio) > SILENCE_LEVEL)
    return audio[voiced[0]:voiced[-1] + 1]  # espeak-ng pads each sentence with its own silence


def make_speech(path: Path) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        sentences = [speak(text, Path(tmp), i) for i, text in enumerate(SENTENCES)]
    pause = np.zeros(int(PAUSE_S * SAMPLE_RATE), np.float32)
    edge = np.zeros(int(EDGE_SILENCE_S * SAMPLE_RATE), np.float32)
    pieces = [edge]
    for i, sentence in enumerate(sentences):
        pieces += [pause] if i else []
        pieces.append(sentence)
    audio = np.concatenate(pieces + [edge])
    audio *= PEAK / max(float(np.abs(audio).max()), 1e-6)
    pcm = np.round(audio * 32767).astype("<i2")
    with wave.open(str(path), "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(SAMPLE_RATE)
        wav.writeframes(pcm.tobytes())
    seconds = audio.size / SAMPLE_RATE
    if not 5.0 <= seconds <= 15.0:
        raise SystemExit(f"{path} lasts {seconds:.1f} s, expected 5-15 s: shorten or add sentences")


def main() -> None:
    ASSETS.mkdir(exist_ok=True)
    make_portrait(ASSETS / "portrait.png")
    make_speech(ASSETS / "speech.wav")
    for name in ("portrait.png", "speech.wav"):
        print(f"{ASSETS / name}: {(ASSETS / name).stat().st_size} bytes")


if __name__ == "__main__":
    main()
