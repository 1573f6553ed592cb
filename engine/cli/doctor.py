"""`flashtalk doctor`: one screen that says whether the chosen setup can run here, and how to fix it.

Exit code 0: the chosen backend can run on this machine (warnings allowed); 1: at least one
problem stops it. `--json` prints the same result for scripts and the studio.
"""
from __future__ import annotations

import argparse
import json
from dataclasses import asdict
from pathlib import Path

from engine.backends import DEFAULT_BACKEND, backend_names
from engine.cli.common import UserError
from engine.cli.doctor_checks import PROBLEM, WARNING, CheckResult, DoctorSetup, run_checks
from engine.flashtalk.runtime.memory_plan import AUTO, OFFLOAD_CHOICES

NAME_WIDTH = 15
STATUS_WIDTH = 8


def add_parser(sub) -> None:
    p = sub.add_parser("doctor", help="check this machine for the chosen setup and say how to fix it")
    p.add_argument("--backend", choices=backend_names(), default=DEFAULT_BACKEND,
                   help="the backend you want to run (default: %(default)s)")
    p.add_argument("--model", type=Path, help="SoulX-FlashTalk-14B folder (flashtalk backend)")
    p.add_argument("--wav2vec", type=Path,
                   help="chinese-wav2vec2-base folder (default: beside --model)")
    p.add_argument("--gpus", type=int, default=1, help="GPUs for one session (flashtalk)")
    p.add_argument("--device", help="torch device for flashtalk, e.g. cuda:0 or cpu")
    p.add_argument("--precision", choices=["bf16", "fp8", "fp32"], default="bf16")
    p.add_argument("--offload", choices=OFFLOAD_CHOICES, default="none", nargs="?", const=AUTO,
                   help="plan for this --offload level (flashtalk)")
    p.add_argument("--gpu-memory", type=float, metavar="GB", dest="gpu_memory_gb",
                   help="plan for this --gpu-memory budget per GPU, GiB (flashtalk)")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    if args.gpus < 1:
        raise UserError("--gpus must be at least 1")
    if args.gpu_memory_gb is not None and not args.gpu_memory_gb > 0:
        raise UserError("--gpu-memory must be a positive number of GiB, e.g. 22")
    setup = DoctorSetup(backend=args.backend, model_dir=args.model, wav2vec_dir=args.wav2vec,
                        gpus=args.gpus, device=args.device, precision=args.precision,
                        offload=args.offload, gpu_memory_gb=args.gpu_memory_gb)
    results = run_checks(setup)
    can_run = not any(r.status == PROBLEM for r in results)
    if args.json:
        print(json.dumps({"backend": setup.backend, "can_run": can_run,
                          "checks": [asdict(r) for r in results]}, indent=2))
    else:
        print(format_report(setup, results, can_run))
    return 0 if can_run else 1


def format_report(setup: DoctorSetup, results: list[CheckResult], can_run: bool) -> str:
    lines = [f"flashtalk doctor: can the {setup.backend} backend run here?", ""]
    for r in results:
        lines.append(f"  {r.status:<{STATUS_WIDTH}} {r.name:<{NAME_WIDTH}} {r.detail}")
        if r.fix and r.status != "ok":
            lines.append(f"  {'':<{STATUS_WIDTH}} {'':<{NAME_WIDTH}} fix: {r.fix}")
    problems = sum(r.status == PROBLEM for r in results)
    warnings = sum(r.status == WARNING for r in results)
    lines.append("")
    if can_run:
        lines.append(f"yes: the {setup.backend} backend can run here ({warnings} warning(s) about "
                     "optional parts).")
    else:
        lines.append(f"no: {problems} problem(s) stop the {setup.backend} backend; run the fix "
                     "lines above, then `flashtalk doctor` again.")
    return "\n".join(lines)
