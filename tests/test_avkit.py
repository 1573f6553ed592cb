"""Shared media I/O: any audio file -> 16 kHz mono; hostile images -> one-line errors; MP4 files."""
from __future__ import annotations

import io
import subprocess
import sys
import wave

import av
import numpy as np
import pytest
from PIL import Image

from avkit.audio_decode import AudioFileError, AudioFileReader, load_audio
from avkit.mp4_writer import Mp4Writer, probe_mp4, read_mp4_audio
from avkit.portrait_image import PortraitImageError, load_portrait
from avkit.resample import StreamResampler, to_mono


def _tone(rate: int, seconds: float, channels: int) -> np.ndarray:
    t = np.arange(int(rate * seconds)) / rate
    mono = 0.5 * np.sin(2 * np.pi * 440 * t).astype(np.float32)
    return np.repeat(mono[:, None], channels, axis=1)


def _encode(path, codec: str, rate: int, channels: int, seconds: float = 1.0):
    pcm = _tone(rate, seconds, channels)
    layout = {1: "mono", 2: "stereo", 6: "5.1", 8: "7.1"}[channels]
    with av.open(str(path), "w") as out:
        stream = out.add_stream(codec, rate=rate)
        stream.layout = layout
        fmt = stream.codec_context.format.name
        frame = av.AudioFrame.from_ndarray(pcm.T.copy() if fmt.endswith("p") else pcm.reshape(1, -1),
                                           format="fltp" if fmt.endswith("p") else "flt", layout=layout)
        frame.sample_rate = rate
        for packet in stream.encode(frame):
            out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)


@pytest.mark.parametrize("ext,codec,rate,channels", [
    ("wav", "pcm_f32le", 48000, 2), ("wav", "pcm_f32le", 192000, 8), ("flac", "flac", 44100, 1),
    ("ogg", "libopus", 48000, 2), ("mp3", "libmp3lame", 22050, 2), ("wav", "pcm_f32le", 8000, 6)])
def test_audio_files_of_any_format_become_16k_mono(tmp_path, ext, codec, rate, channels):
    path = tmp_path / f"a.{ext}"
    _encode(path, codec, rate, channels)
    audio = load_audio(path)
    assert audio.dtype == np.float32 and audio.ndim == 1
    assert abs(audio.size - 16000) < 1600  # codecs pad a little
    spectrum = np.abs(np.fft.rfft(audio[2000:14000]))
    peak_hz = np.argmax(spectrum) * 16000 / 12000
    assert abs(peak_hz - 440) < 5


def test_bad_audio_files_get_one_line_errors(tmp_path):
    (tmp_path / "text.wav").write_text("not audio at all")
    with pytest.raises(AudioFileError, match="cannot read text.wav"):
        load_audio(tmp_path / "text.wav")
    with pytest.raises(AudioFileError, match="not found"):
        load_audio(tmp_path / "missing.wav")
    empty = tmp_path / "empty.wav"
    with wave.open(str(empty), "wb") as w:
        w.setnchannels(1), w.setsampwidth(2), w.setframerate(16000)
    with pytest.raises(AudioFileError, match="no audio samples"):
        load_audio(empty)
    long_file = tmp_path / "long.wav"
    _encode(long_file, "pcm_f32le", 8000, 1, seconds=3.0)
    with pytest.raises(AudioFileError, match="longer than"):
        load_audio(long_file, max_seconds=1.0)


def test_empty_and_garbage_audio_files_say_what_is_wrong_without_ffmpegs_errno(tmp_path):
    (tmp_path / "zero.wav").write_bytes(b"")
    with pytest.raises(AudioFileError, match=r"zero.wav is empty \(0 bytes\)"):
        load_audio(tmp_path / "zero.wav")
    (tmp_path / "noise.wav").write_bytes(np.random.default_rng(0).integers(0, 256, 5000, np.uint8).tobytes())
    with pytest.raises(AudioFileError) as info:
        load_audio(tmp_path / "noise.wav")
    assert "not an audio file, or it is damaged" in str(info.value) and "Errno" not in str(info.value)


def test_reader_holds_one_frame_at_most_and_seeks_to_the_sample(tmp_path):
    """A long file read block by block: the reader never holds more than a decoded frame beyond
    the block asked for, whatever the file's length; a seek lands on the exact sample."""
    path = tmp_path / "long.wav"
    rate, seconds = 44100, 120.0
    t = np.arange(int(rate * seconds)) / rate
    marker = (np.sin(2 * np.pi * 440 * t) * np.minimum(1.0, t / seconds)).astype(np.float32)  # rising amplitude
    with wave.open(str(path), "wb") as w:
        w.setnchannels(2), w.setsampwidth(2), w.setframerate(rate)
        w.writeframes((np.repeat(marker[:, None], 2, axis=1) * 32767).astype("<i2").tobytes())
    with AudioFileReader(path) as reader:
        assert abs(reader.duration_s - seconds) < 1e-3
        most, total = 0, 0
        while (block := reader.read(320)).size:
            total += block.size
            most = max(most, reader.held_samples)
        assert abs(total - 16000 * seconds) <= 64
        assert most < 16000 // 4  # one decoded frame (a few thousand samples at most), not the file
        whole = load_audio(path)
        for at in (95.25, 3.0, 0.0):
            reader.seek(at)
            start = round(at * 16000)
            assert reader.position == start
            got = reader.read(1600)
            # to the sample; the resampler starts afresh there, so its first few samples settle
            np.testing.assert_allclose(got[32:], whole[start + 32:start + 1600], atol=0.01)


def test_stream_resampler_is_continuous_across_blocks_and_sanitizes():
    tone = _tone(48000, 1.0, 1)[:, 0]
    res = StreamResampler(48000, 1)
    pieces = [res.push(tone[i:i + 480]) for i in range(0, tone.size, 480)] + [res.flush()]
    streamed = np.concatenate(pieces)
    whole = to_mono(tone, 48000)
    n = min(streamed.size, whole.size)
    assert abs(streamed.size - 16000) <= 64
    assert np.max(np.abs(streamed[:n] - whole[:n])) < 1e-4
    dirty = np.array([np.nan, np.inf, -np.inf, 3.0, -3.0, 0.25], np.float32)
    assert StreamResampler(16000, 1).push(dirty).tolist() == [0, 0, 0, 1, -1, 0.25]


def _png(img: Image.Image, fmt="PNG", **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt, **kw)
    return buf.getvalue()


def test_portrait_formats_and_modes_become_rgb():
    for img, fmt in [(Image.new("RGB", (80, 90), (10, 20, 30)), "PNG"),
                     (Image.new("RGBA", (80, 90), (10, 20, 30, 0)), "PNG"),
                     (Image.new("CMYK", (80, 90), (0, 0, 0, 0)), "JPEG"),
                     (Image.new("I;16", (80, 90), 1000), "PNG"),
                     (Image.new("L", (80, 90), 128), "WEBP")]:
        rgb = load_portrait(_png(img, fmt))
        assert rgb.shape == (90, 80, 3) and rgb.dtype == np.uint8
    assert load_portrait(_png(Image.new("RGBA", (80, 90), (10, 20, 30, 0))))[0, 0].tolist() == [255, 255, 255]


def test_animated_portrait_uses_first_frame():
    frames = [Image.new("RGB", (80, 80), c) for c in [(255, 0, 0), (0, 255, 0)]]
    buf = io.BytesIO()
    frames[0].save(buf, "WEBP", save_all=True, append_images=frames[1:])
    with pytest.warns(UserWarning, match="animated"):
        rgb = load_portrait(buf.getvalue())
    assert rgb[40, 40, 0] > 200


@pytest.mark.parametrize("data,match", [
    (b"definitely not an image", "not a PNG, JPEG or WebP"),
    (_png(Image.new("RGB", (1, 1))), "only 1x1"),
    (_png(Image.fromarray(np.random.default_rng(0).integers(0, 255, (200, 200, 3), np.uint8)))[:3000],
     "corrupt or truncated"),
    (_png(Image.new("1", (20000, 20000))), "megapixels"),
    (_png(Image.new("1", (8000, 8000))), "megapixels"),
])
def test_hostile_portraits_get_one_line_errors(data, match):
    with pytest.raises(PortraitImageError, match=match) as info:
        load_portrait(data)
    assert "\n" not in str(info.value)


def test_mp4_writer_is_atomic_and_in_sync(tmp_path):
    out = tmp_path / "clip.mp4"
    with Mp4Writer(out, 64, 48) as w:
        w.write_frames(np.random.default_rng(0).integers(0, 255, (50, 48, 64, 3), np.uint8))
        w.write_audio(_tone(16000, 2.0, 1)[:, 0])
        assert not out.exists()  # only the partial file exists while writing
    info = probe_mp4(out)
    assert (info.video_frames, info.width, info.height, info.fps) == (50, 64, 48, 25.0)
    assert abs(info.audio_samples / info.audio_rate - 2.0) < 0.1
    assert not list(tmp_path.glob("*.partial-*"))
    assert np.abs(read_mp4_audio(out)).max() > 0.3


def test_mp4_writer_abort_leaves_nothing(tmp_path):
    out = tmp_path / "clip.mp4"
    with pytest.raises(RuntimeError):
        with Mp4Writer(out, 64, 48) as w:
            w.write_frames(np.zeros((5, 48, 64, 3), np.uint8))
            raise RuntimeError("interrupted")
    assert list(tmp_path.iterdir()) == []


def test_fragmented_recording_survives_a_kill(tmp_path):
    """A fragmented MP4 whose writer process is SIGKILLed stays readable up to its last fragment."""
    script = f"""
import numpy as np, os, signal
from avkit.mp4_writer import Mp4Writer
w = Mp4Writer({str(tmp_path / 'rec.mp4')!r}, 64, 48, fragmented=True)
for i in range(100):
    w.write_frames(np.full((1, 48, 64, 3), i, np.uint8)); w.write_audio(np.zeros(640, np.float32))
os.kill(os.getpid(), signal.SIGKILL)
"""
    subprocess.run([sys.executable, "-c", script], check=False)
    partial = next(tmp_path.glob("rec.partial-*.mp4"))
    info = probe_mp4(partial)
    assert info.video_frames >= 100 - 25  # loses at most the last second (one fragment)
