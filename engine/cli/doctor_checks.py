"""The checks behind `flashtalk doctor`: each looks at one thing and says ok, warning or problem.

Optional packages (torch, sounddevice, pyvirtualcam, the flashtalk weights code) are probed with
importlib.util.find_spec and imported only inside the check that needs them, so the doctor runs on
a bare install and explains what is missing instead of crashing on it. Only a "problem" stops the
chosen setup from running; warnings concern optional parts (microphone, virtual camera, display).
"""
from __future__ import annotations

import importlib
import importlib.util
import os
import platform
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

OK, WARNING, PROBLEM = "ok", "warning", "problem"
MIN_PYTHON = (3, 11)
GIB = 1024 ** 3
INSTALL_FLASHTALK = "pip install 'flashtalk-studio[flashtalk]'"
DOWNLOAD_MODELS = ("flashtalk models download ~/models   "
                   "(then pass --model ~/models/SoulX-FlashTalk-14B)")
BACKEND_PACKAGES = {
    "puppet": ["numpy", "cv2", "dlib", "face_recognition_models", "av", "zmq", "msgpack"],
    "flashtalk": ["numpy", "av", "zmq", "msgpack", "torch", "diffusers", "transformers",
                  "safetensors"],
}
BACKEND_MODULES = {"puppet": "engine.backends.puppet", "flashtalk": "engine.backends.flashtalk"}


@dataclass
class CheckResult:
    name: str
    status: str  # OK | WARNING | PROBLEM
    detail: str
    fix: str = ""  # the one command (or step) that fixes it; empty when nothing needs fixing


@dataclass
class DoctorSetup:
    """The setup the user wants to run (mirrors the serve/render backend options)."""

    backend: str = "puppet"
    model_dir: Path | None = None
    wav2vec_dir: Path | None = None
    gpus: int = 1
    device: str | None = None
    precision: str = "bf16"
    offload: str = "none"  # an offload level (runtime.memory_plan.OFFLOAD_CHOICES)
    gpu_memory_gb: float | None = None

    @property
    def on_gpu(self) -> bool:
        return self.backend == "flashtalk" and not (self.device or "").startswith("cpu")

    @property
    def wav2vec(self) -> Path | None:
        if self.wav2vec_dir is not None or self.model_dir is None:
            return self.wav2vec_dir
        return self.model_dir.parent / "chinese-wav2vec2-base"


@dataclass
class GpuCard:
    index: int
    name: str
    total_gib: float
    free_gib: float


@dataclass
class GpuReport:
    """What the machine has, from torch.cuda when torch is installed, else from nvidia-smi."""

    cards: list[GpuCard] = field(default_factory=list)
    driver: str | None = None
    torch_version: str | None = None  # None: torch is not installed
    torch_cuda: str | None = None  # CUDA version the torch build targets; None for a CPU build
    torch_sees_gpu: bool = False
    torch_error: str = ""


def probe_gpus() -> GpuReport:
    report = GpuReport(driver=_nvidia_driver())
    if importlib.util.find_spec("torch") is not None:
        try:
            import torch  # lazily: only when it is installed
        except Exception as exc:  # a broken install raises many kinds
            report.torch_error = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
        else:
            report.torch_version = torch.__version__
            report.torch_cuda = torch.version.cuda
            report.torch_sees_gpu = bool(torch.cuda.is_available())
            if report.torch_sees_gpu:
                for i in range(torch.cuda.device_count()):
                    free, total = torch.cuda.mem_get_info(i)
                    report.cards.append(GpuCard(i, torch.cuda.get_device_name(i), total / GIB, free / GIB))
    if not report.cards:
        report.cards = _nvidia_smi_cards()
    return report


def _nvidia_smi_cards() -> list[GpuCard]:
    if shutil.which("nvidia-smi") is None:
        return []
    out = _run(["nvidia-smi", "--query-gpu=index,name,memory.total,memory.free",
                "--format=csv,noheader,nounits"])
    cards = []
    for line in out.splitlines():
        parts = [p.strip() for p in line.split(",")]
        if len(parts) == 4 and parts[0].isdigit():
            total_mib, free_mib = float(parts[2]), float(parts[3])
            cards.append(GpuCard(int(parts[0]), parts[1], total_mib / 1024, free_mib / 1024))
    return cards


def _nvidia_driver() -> str | None:
    if shutil.which("nvidia-smi") is not None:
        out = _run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"])
        if out.strip():
            return out.splitlines()[0].strip()
    version_file = Path("/proc/driver/nvidia/version")
    if version_file.is_file():
        words = version_file.read_text(errors="replace").split()
        numbers = [w for w in words if w.count(".") >= 1 and w.replace(".", "").isdigit()]
        return numbers[0] if numbers else None
    return None


def _run(cmd: list[str]) -> str:
    try:
        return subprocess.run(cmd, capture_output=True, text=True, timeout=15).stdout
    except (OSError, subprocess.TimeoutExpired):
        return ""


# -- the checks -----------------------------------------------------------------------------------


def check_python() -> CheckResult:
    version = ".".join(map(str, sys.version_info[:3]))
    if sys.version_info[:2] < MIN_PYTHON:
        return CheckResult("python", PROBLEM, f"{version} is too old (3.11 or newer needed)",
                           "install Python 3.11+ and reinstall: pip install flashtalk-studio")
    return CheckResult("python", OK, f"{version} ({sys.executable})")


def check_os() -> CheckResult:
    name = {"linux": "Linux", "darwin": "macOS", "win32": "Windows"}.get(sys.platform, sys.platform)
    release = platform.release()
    if sys.platform == "linux":
        pretty = _os_release_name()
        release = f"{release}, {pretty}" if pretty else release
    detail = f"{name} {release} {platform.machine()}, {os.cpu_count() or '?'} CPU cores"
    if sys.platform not in ("linux", "darwin", "win32"):
        return CheckResult("os", WARNING, detail + " (untested platform)")
    return CheckResult("os", OK, detail)


def _os_release_name() -> str:
    path = Path("/etc/os-release")
    if not path.is_file():
        return ""
    for line in path.read_text(errors="replace").splitlines():
        if line.startswith("PRETTY_NAME="):
            return line.split("=", 1)[1].strip().strip('"')
    return ""


def check_backend_packages(setup: DoctorSetup) -> CheckResult:
    """The Python packages and the backend module the chosen backend imports."""
    missing = [m for m in BACKEND_PACKAGES[setup.backend] if importlib.util.find_spec(m) is None]
    fix = INSTALL_FLASHTALK if setup.backend == "flashtalk" else "pip install flashtalk-studio"
    if missing:
        return CheckResult("packages", PROBLEM, f"the {setup.backend} backend needs "
                           f"{', '.join(missing)}, not installed", fix)
    module = BACKEND_MODULES[setup.backend]
    try:
        importlib.import_module(module)
    except ImportError as exc:
        return CheckResult("packages", PROBLEM, f"{module} cannot be imported ({exc.name or exc} "
                           "missing)", fix)
    return CheckResult("packages", OK, f"everything the {setup.backend} backend imports is installed")


def check_gpus(setup: DoctorSetup, gpu: GpuReport) -> CheckResult:
    names = "; ".join(f"{c.index}: {c.name} {c.total_gib:.0f} GiB" for c in gpu.cards)
    driver = f", driver {gpu.driver}" if gpu.driver else ""
    if not setup.on_gpu:
        why = ("not needed by the puppet backend" if setup.backend == "puppet"
               else f"not used (--device {setup.device}); only tiny test checkpoints are practical")
        return CheckResult("gpu", OK, f"{names + driver if gpu.cards else 'none found'} ({why})")
    if not gpu.cards:
        return CheckResult("gpu", PROBLEM, "no NVIDIA GPU found: the flashtalk backend needs one "
                           "(H100-class for real time)", "install the NVIDIA driver (nvidia-smi must "
                           "list the card), or attach the studio to a GPU server (docs/quickstart.md)")
    if len(gpu.cards) < setup.gpus:
        return CheckResult("gpu", PROBLEM, f"--gpus {setup.gpus} asked, {len(gpu.cards)} found: "
                           f"{names}{driver}", f"pass --gpus {len(gpu.cards)}")
    how = (f"; start with: torchrun --nproc-per-node {setup.gpus} -m engine serve ..."
           if setup.gpus > 1 else "")
    return CheckResult("gpu", OK, f"{names}{driver}{how}")


def check_torch(setup: DoctorSetup, gpu: GpuReport) -> CheckResult:
    if gpu.torch_error:
        return CheckResult("torch", PROBLEM if setup.backend == "flashtalk" else WARNING,
                           f"torch is installed but does not import: {gpu.torch_error}",
                           "pip install --force-reinstall torch")
    if gpu.torch_version is None:
        if setup.backend == "flashtalk":
            return CheckResult("torch", PROBLEM, "torch is not installed (the flashtalk backend "
                               "needs it)", INSTALL_FLASHTALK)
        return CheckResult("torch", OK, "not installed (not needed by the puppet backend)")
    build = f"torch {gpu.torch_version}, " + (f"CUDA {gpu.torch_cuda} build" if gpu.torch_cuda
                                              else "CPU-only build")
    if setup.on_gpu and gpu.cards and not gpu.torch_sees_gpu:
        why = ("this torch build has no CUDA" if not gpu.torch_cuda
               else "CUDA does not start (driver too old for this build?)")
        return CheckResult("torch", PROBLEM, f"{build}: {why}", "pip install --force-reinstall torch "
                           "--index-url https://download.pytorch.org/whl/cu128")
    return CheckResult("torch", OK, build + (", sees the GPU" if gpu.torch_sees_gpu else ""))


def plan_gpu_memory(setup: DoctorSetup, free_gib: float | None = None):
    """The engine's memory plan for this setup (runtime.memory_plan) -> (plan, note).

    Sizes come from the --model folder's configs, or the official 14B's when no readable folder
    is given (the note says so); with --offload auto and no --gpu-memory, the budget is `free_gib`.
    """
    from engine.flashtalk.runtime.memory_plan import GIB as PLAN_GIB
    from engine.flashtalk.runtime.memory_plan import Workload, choose_plan
    from engine.flashtalk.runtime.module_sizes import checkpoint_sizes
    from engine.flashtalk.weights import CheckpointError

    note = ""
    try:
        sizes = checkpoint_sizes(setup.model_dir, setup.wav2vec, setup.precision)
    except (CheckpointError, OSError, ValueError):
        sizes = checkpoint_sizes(None, None, setup.precision)
        note = ", official 14B sizes: the --model folder is unreadable"
    budget_gib = setup.gpu_memory_gb if setup.gpu_memory_gb is not None else (
        free_gib if setup.offload == "auto" else None)
    budget = None if budget_gib is None else int(budget_gib * PLAN_GIB)
    return choose_plan(sizes, setup.offload, Workload.of(gpus=setup.gpus), budget), note


def required_gpu_gib(setup: DoctorSetup) -> float:
    """The predicted peak per card, GiB (weights replicate on every card; tokens and VAE bands split)."""
    return plan_gpu_memory(setup)[0].peak / GIB


def check_gpu_memory(setup: DoctorSetup, gpu: GpuReport) -> CheckResult:
    if not setup.on_gpu:
        return CheckResult("gpu memory", OK, "no GPU memory needed by this setup")
    used = gpu.cards[:setup.gpus]
    free_gib = min((c.free_gib for c in used), default=None)
    from engine.flashtalk.runtime.memory_plan import MemoryPlanError  # plain arithmetic, no torch

    try:
        plan, note = plan_gpu_memory(setup, free_gib)
    except ImportError as exc:
        return CheckResult("gpu memory", PROBLEM, f"cannot plan GPU memory: {exc.name or exc} is missing",
                           INSTALL_FLASHTALK)
    except MemoryPlanError as exc:
        return CheckResult("gpu memory", PROBLEM, str(exc), "pass a larger --gpu-memory, or --offload auto")
    streamed = f", {len(plan.streamed)} of {len(plan.sizes.dit_blocks)} DiT blocks streamed" if plan.streamed else ""
    detail = (f"predicted peak {plan.peak / GIB:.1f} GiB per card ({setup.precision}, --offload {plan.level}"
              f"{streamed}, 448x768, peak while: {plan.peak_phase}{note})")
    if not gpu.cards:
        return CheckResult("gpu memory", PROBLEM, f"{detail}; no GPU found",
                           "attach the studio to a GPU server (docs/quickstart.md)")
    free = ", ".join(f"{c.index}: {c.free_gib:.1f} GiB free" for c in used)
    short = [c for c in used if c.free_gib < plan.peak / GIB]
    if short:
        fix = ("pass --offload auto (waits in host memory what does not fit)" if setup.offload != "auto"
               else "use a card with more memory, or --precision fp8, or close what holds the GPU "
                    "(nvidia-smi lists it)")
        return CheckResult("gpu memory", PROBLEM, f"{detail}; {free}", fix)
    return CheckResult("gpu memory", OK, f"{detail}; {free}")


def check_models(setup: DoctorSetup) -> CheckResult:
    if setup.backend != "flashtalk":
        return CheckResult("models", OK, "none needed (the puppet backend ships its face model)")
    if setup.model_dir is None:
        return CheckResult("models", PROBLEM, "no --model folder: the flashtalk backend needs the "
                           "SoulX-FlashTalk-14B weights", DOWNLOAD_MODELS)
    try:
        from engine.flashtalk import weights  # lazily: pulls in torch
    except ImportError as exc:
        return CheckResult("models", PROBLEM, f"cannot check {setup.model_dir}: the model code needs "
                           f"{exc.name or exc}", INSTALL_FLASHTALK)
    try:
        weights.validate_model_dir(setup.model_dir, setup.wav2vec)
    except weights.CheckpointError as exc:
        return CheckResult("models", PROBLEM, str(exc), DOWNLOAD_MODELS)
    return CheckResult("models", OK, f"{setup.model_dir} and {setup.wav2vec} match the official layout")


def check_audio() -> CheckResult:
    if importlib.util.find_spec("sounddevice") is None:
        return CheckResult("audio", WARNING, "sounddevice is not installed: no microphone input",
                           "pip install sounddevice")
    try:
        import sounddevice  # loads PortAudio, which may be missing
        devices = list(sounddevice.query_devices())
    except OSError as exc:
        return CheckResult("audio", WARNING, f"PortAudio is missing ({exc}): no microphone input",
                           _portaudio_fix())
    inputs = [d["name"] for d in devices if d.get("max_input_channels", 0) > 0]
    outputs = [d["name"] for d in devices if d.get("max_output_channels", 0) > 0]
    if not inputs and not outputs:
        return CheckResult("audio", WARNING, "no microphone or speaker found: the studio can still "
                           "drive the avatar from audio files and text-to-speech",
                           _no_audio_fix())
    detail = f"{len(inputs)} input(s), {len(outputs)} output(s)"
    if not inputs:
        return CheckResult("audio", WARNING, detail + ": no microphone, live speech won't work",
                           _no_audio_fix())
    return CheckResult("audio", OK, f"{detail}; first input: {inputs[0]}")


def _portaudio_fix() -> str:
    if sys.platform == "linux":
        return "sudo apt install libportaudio2   (Fedora: sudo dnf install portaudio)"
    return "pip install --force-reinstall sounddevice   (its wheel bundles PortAudio)"


def _no_audio_fix() -> str:
    if sys.platform == "linux":
        return "plug in a headset, or start the sound server: pulseaudio --start (or systemctl --user start pipewire)"
    return "plug in a microphone and allow microphone access for Python in the system settings"


# Device names the usual virtual audio cables give their playback side.
VIRTUAL_CABLE_NAMES = {"win32": ("CABLE Input",), "darwin": ("BlackHole",)}


def check_virtual_microphone() -> CheckResult:
    """Is there a device the avatar's voice can play into and a call app can use as microphone?"""
    name = "virtual microphone"
    if sys.platform != "linux":
        try:
            import sounddevice
            outputs = [d["name"] for d in sounddevice.query_devices() if d.get("max_output_channels", 0) > 0]
        except (ImportError, OSError):
            outputs = []
        found = [o for o in outputs if any(c in o for c in VIRTUAL_CABLE_NAMES.get(sys.platform, ()))]
        if found:
            return CheckResult(name, OK, f"{found[0]}: pick it under Voice to in the studio")
        return CheckResult(name, WARNING, "no virtual audio cable: a call hears your real microphone, "
                           "ahead of the avatar's lips", virtual_microphone_fix())
    if shutil.which("pactl") is None:
        return CheckResult(name, WARNING, "pactl not found: cannot list or create a virtual microphone",
                           "sudo apt install pulseaudio-utils")
    try:
        listing = subprocess.run(["pactl", "list", "short", "modules"], capture_output=True, text=True,
                                 timeout=10, check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return CheckResult(name, WARNING, "no PulseAudio/PipeWire sound server answers",
                           "start it: pulseaudio --start (or systemctl --user start pipewire-pulse)")
    sinks = [arg.split("=", 1)[1] for line in listing.splitlines() if "\tmodule-null-sink\t" in line
             for arg in line.split("\t", 2)[2].split() if arg.startswith("sink_name=")]
    if sinks:
        return CheckResult(name, OK, f"null sink {sinks[0]}: studio Voice to -> {sinks[0]}, call "
                           f"microphone -> its monitor (docs/troubleshooting.md)")
    return CheckResult(name, WARNING, "no null sink: a call hears your real microphone, ahead of the "
                       "avatar's lips", virtual_microphone_fix())


def virtual_microphone_fix(platform_name: str = sys.platform) -> str:
    if platform_name == "linux":
        return ("pactl load-module module-null-sink sink_name=flashtalk_mic "
                "sink_properties=device.description=FlashTalk-Speaker   (then restart the studio; "
                "docs/troubleshooting.md adds a browser-visible microphone)")
    if platform_name == "darwin":
        return "brew install blackhole-2ch, then Voice to -> BlackHole 2ch and call microphone -> BlackHole 2ch"
    return "install VB-Audio Virtual Cable, then Voice to -> CABLE Input and call microphone -> CABLE Output"


SYSTEM_CAMERA_BACKEND = {"linux": "v4l2loopback", "win32": "obs", "darwin": "obs"}

def check_virtual_camera() -> CheckResult:
    if importlib.util.find_spec("pyvirtualcam") is None:
        return CheckResult("virtual camera", WARNING, "pyvirtualcam is not installed",
                           "pip install pyvirtualcam")
    import pyvirtualcam
    try:
        # The platform's own backend, never one registered in-process (tests register fakes).
        backend = SYSTEM_CAMERA_BACKEND.get(sys.platform)
        with pyvirtualcam.Camera(width=64, height=64, fps=25, backend=backend) as cam:
            device = cam.device
    except RuntimeError as exc:
        reason = str(exc).splitlines()[0].split(". ")[0]
        return CheckResult("virtual camera", WARNING, f"none available ({reason}); Zoom/Teams won't "
                           "see the avatar, preview and recording still work", virtual_camera_fix())
    return CheckResult("virtual camera", OK, f"{device} opens")


def virtual_camera_fix(platform_name: str = sys.platform) -> str:
    if platform_name == "linux":
        return ('sudo apt install v4l2loopback-dkms && sudo modprobe v4l2loopback exclusive_caps=1 '
                'card_label="FlashTalk"')
    return "install OBS Studio (obsproject.com) and click Start Virtual Camera once"


def check_espeak() -> CheckResult:
    path = shutil.which("espeak-ng")
    if path is None:
        fix = {"linux": "sudo apt install espeak-ng", "darwin": "brew install espeak-ng"}.get(
            sys.platform, "install espeak-ng from github.com/espeak-ng/espeak-ng/releases")
        return CheckResult("espeak-ng", WARNING, "not found: no text-to-speech input", fix)
    version = _run([path, "--version"]).split(" Data at")[0].strip()
    return CheckResult("espeak-ng", OK, version or path)


def check_display() -> CheckResult:
    if sys.platform != "linux":
        return CheckResult("display", OK, "desktop session")
    shown = [f"{k}={os.environ[k]}" for k in ("WAYLAND_DISPLAY", "DISPLAY") if os.environ.get(k)]
    if shown:
        return CheckResult("display", OK, ", ".join(shown))
    return CheckResult("display", WARNING, "no DISPLAY or WAYLAND_DISPLAY: the studio window cannot "
                       "open here; `flashtalk render` and `flashtalk serve` work without one",
                       "run the studio from a desktop session, or over ssh -X; headless tests: "
                       "QT_QPA_PLATFORM=offscreen")


def run_checks(setup: DoctorSetup) -> list[CheckResult]:
    gpu = probe_gpus()
    return [check_python(), check_os(), check_backend_packages(setup), check_gpus(setup, gpu),
            check_torch(setup, gpu), check_gpu_memory(setup, gpu), check_models(setup),
            check_audio(), check_virtual_microphone(), check_virtual_camera(), check_espeak(),
            check_display()]
