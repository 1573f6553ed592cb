"""`flashtalk doctor`: one screen that says whether the chosen setup can run here, and how to fix it.

Exit code 0: the chosen backend can run on this machine (warnings allowed); 1: at least one
problem stops it. `--json` prints the same result for scripts. The desktop's parts (microphone,
virtual camera and microphone, text to speech, display) are the studio's: the report ends by
pointing at `flashtalk-studio --doctor`, which checks them with the studio's own probes.
"""
from __future__ import annotations

import argparse
import json
from dataclasses import asdict

from engine.cli.common import add_backend_options, backend_options
from engine.cli.doctor_checks import DESKTOP_DOCTOR, DoctorSetup, run_checks
from engine.protocol.doctor_report import PROBLEM, WARNING, CheckResult, check_lines


def add_parser(sub) -> None:
    p = sub.add_parser("doctor", help="check this machine for the chosen setup and say how to fix it")
    add_backend_options(p, "doctor")  # the setup to check: the flags serve would start it with
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    setup = DoctorSetup.of(args.backend, backend_options(args))
    results = run_checks(setup)
    can_run = not any(r.status == PROBLEM for r in results)
    if args.json:
        print(json.dumps({"backend": setup.backend, "can_run": can_run,
                          "checks": [asdict(r) for r in results], "desktop_checks": DESKTOP_DOCTOR}, indent=2))
    else:
        print(format_report(setup, results, can_run))
    return 0 if can_run else 1


def format_report(setup: DoctorSetup, results: list[CheckResult], can_run: bool) -> str:
    lines = [f"flashtalk doctor: can the {setup.backend} backend run here?", "", *check_lines(results)]
    lines.append(f"  microphone, virtual camera and microphone, text to speech, display: {DESKTOP_DOCTOR}")
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
