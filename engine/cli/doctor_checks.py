"""The checks behind `flashtalk doctor`: each looks at one thing and says ok, warning or problem.

Optional packages (torch, the flashtalk weights code) are probed with importlib.util.find_spec and
imported only inside the check that needs them, so the doctor runs on a bare install and explains
what is missing instead of crashing on it. Only a "problem" stops the chosen setup from running.
These are the engine's checks (the machine that generates); the desktop's (microphone, virtual
camera and microphone, text to speech, display) are the studio's: `flashtalk-studio --doctor`.
"""
from __future__ import annotations

import importlib.util
import os
import platform
import shutil
import subprocess
import sys
from dataclasses import dataclass, field, fields
from pathlib import Path

from engine.backends import backend_class
from engine.backends.base import BackendUnavailable
from engine.flashtalk.weights.checkpoint_layout import (
    MODEL_FOLDER,
    wav2vec_dir_for,
)
from engine.protocol.backend_names import DEFAULT_BACKEND, BackendName
from engine.protocol.doctor_report import OK, PROBLEM, WARNING, CheckResult
from engine.protocol.engine_options import BackendOptions, default_precision

MIN_PYTHON = (3, 11)
GIB = 1024 ** 3
INSTALL_FLASHTALK = "pip install 'flashtalk-studio[flashtalk]'"
DOWNLOAD_MODELS = f"flashtalk models download ~/models   (then pass --model ~/models/{MODEL_FOLDER})"
BACKEND_PACKAGES = {
    BackendName.PUPPET: ["numpy", "cv2", "dlib", "face_recognition_models", "av", "zmq", "msgpack"],
    BackendName.FLASHTALK: ["numpy", "av", "zmq", "msgpack", "torch", "diffusers", "transformers",
                            "safetensors"],
}
DESKTOP_DOCTOR = "flashtalk-studio --doctor"  # the microphone, virtual camera/microphone, speech, display


@dataclass
class DoctorSetup(BackendOptions):
    """The setup the user wants to run: a backend and the options serve would start it with."""

    backend: str = DEFAULT_BACKEND

    @classmethod
    def of(cls, backend: str, options: BackendOptions) -> DoctorSetup:
        return cls(backend=backend, **{f.name: getattr(options, f.name) for f in fields(BackendOptions)})

    @property
    def on_gpu(self) -> bool:
        return self.backend == BackendName.FLASHTALK and not (self.device or "").startswith("cpu")

    @property
    def planned_precision(self) -> str:
        """--precision, or what the engine would pick on this setup's device."""
        return self.precision or default_precision("cuda" if self.on_gpu else "cpu")

    @property
    def wav2vec(self) -> Path | None:
        if self.model_dir is None:
            return self.wav2vec_dir
        return wav2vec_dir_for(self.model_dir, self.wav2vec_dir)


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
    fix = INSTALL_FLASHTALK if setup.backend == BackendName.FLASHTALK else "pip install flashtalk-studio"
    if missing:
        return CheckResult("packages", PROBLEM, f"the {setup.backend} backend needs "
                           f"{', '.join(missing)}, not installed", fix)
    try:
        backend_class(setup.backend)  # imports the backend's module, as the engine will
    except BackendUnavailable as exc:
        return CheckResult("packages", PROBLEM, str(exc), fix)
    return CheckResult("packages", OK, f"everything the {setup.backend} backend imports is installed")


def check_gpus(setup: DoctorSetup, gpu: GpuReport) -> CheckResult:
    names = "; ".join(f"{c.index}: {c.name} {c.total_gib:.0f} GiB" for c in gpu.cards)
    driver = f", driver {gpu.driver}" if gpu.driver else ""
    if not setup.on_gpu:
        why = ("not needed by the puppet backend" if setup.backend == BackendName.PUPPET
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
        return CheckResult("torch", PROBLEM if setup.backend == BackendName.FLASHTALK else WARNING,
                           f"torch is installed but does not import: {gpu.torch_error}",
                           "pip install --force-reinstall torch")
    if gpu.torch_version is None:
        if setup.backend == BackendName.FLASHTALK:
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
    from engine.flashtalk.weights.checkpoint_validation import CheckpointError

    note = ""
    try:
        sizes = checkpoint_sizes(setup.model_dir, setup.wav2vec, setup.planned_precision)
    except (CheckpointError, OSError, ValueError):
        sizes = checkpoint_sizes(None, None, setup.planned_precision)
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
    detail = (f"predicted peak {plan.peak / GIB:.1f} GiB per card ({setup.planned_precision}, --offload {plan.level}"
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
    if setup.backend != BackendName.FLASHTALK:
        return CheckResult("models", OK, "none needed (the puppet backend ships its face model)")
    if setup.model_dir is None:
        return CheckResult("models", PROBLEM, "no --model folder: the flashtalk backend needs the "
                           f"{MODEL_FOLDER} weights", DOWNLOAD_MODELS)
    try:
        from engine.flashtalk.weights import checkpoint_validation  # lazily: pulls in torch
    except ImportError as exc:
        return CheckResult("models", PROBLEM, f"cannot check {setup.model_dir}: the model code needs "
                           f"{exc.name or exc}", INSTALL_FLASHTALK)
    try:
        checkpoint_validation.validate_model_dir(setup.model_dir, setup.wav2vec)
    except checkpoint_validation.CheckpointError as exc:
        return CheckResult("models", PROBLEM, str(exc), DOWNLOAD_MODELS)
    return CheckResult("models", OK, f"{setup.model_dir} and {setup.wav2vec} match the official layout")


def run_checks(setup: DoctorSetup) -> list[CheckResult]:
    gpu = probe_gpus()
    return [check_python(), check_os(), check_backend_packages(setup), check_gpus(setup, gpu),
            check_torch(setup, gpu), check_gpu_memory(setup, gpu), check_models(setup)]
