"""`flashtalk models`: check a checkpoint folder, make a tiny one, download the official ones."""
from __future__ import annotations

import argparse
import importlib
from pathlib import Path

from engine.cli.common import UserError
from engine.flashtalk.weights.checkpoint_layout import (
    MODEL_FOLDER,
    MODEL_REPO,
    WAV2VEC_FOLDER,
    WAV2VEC_REPO,
    wav2vec_dir_for,
)

OFFICIAL_REPOS = {MODEL_FOLDER: MODEL_REPO, WAV2VEC_FOLDER: WAV2VEC_REPO}
BOTH_FOLDERS = f"{MODEL_FOLDER}/ and {WAV2VEC_FOLDER}/"


def add_parser(sub) -> None:
    p = sub.add_parser("models", help="check, make or download FlashTalk checkpoints")
    msub = p.add_subparsers(dest="models_command", required=True)
    c = msub.add_parser("check", help="validate a checkpoint folder without touching a GPU")
    c.add_argument("model_dir", type=Path, help=f"the {MODEL_FOLDER} folder")
    c.add_argument("--wav2vec", type=Path, help=f"{WAV2VEC_FOLDER} folder (default: beside it)")
    c.set_defaults(run=run_check)
    t = msub.add_parser("make-tiny", help="write a tiny random checkpoint in the official layout")
    t.add_argument("root", type=Path, help=f"folder to create (gets {BOTH_FOLDERS})")
    t.add_argument("--seed", type=int, default=0)
    t.set_defaults(run=run_make_tiny)
    d = msub.add_parser("download", help="download the official weights (needs network)")
    d.add_argument("root", type=Path, help=f"folder that gets {BOTH_FOLDERS}")
    d.set_defaults(run=run_download)


def _needs_torch(what: str):
    """Import the weights module `what` (it pulls in torch), or say how to install it."""
    try:
        return importlib.import_module(f"engine.flashtalk.weights.{what}")
    except ImportError as exc:
        raise UserError(f"model tools need the flashtalk extra ({exc.name} missing): "
                        "pip install 'flashtalk-studio[flashtalk]'") from None


def run_check(args: argparse.Namespace) -> int:
    validation = _needs_torch("checkpoint_validation")
    wav2vec = wav2vec_dir_for(args.model_dir, args.wav2vec)
    try:
        validation.validate_model_dir(args.model_dir, wav2vec)
    except validation.CheckpointError as exc:
        raise UserError(str(exc)) from None
    print(f"ok: {args.model_dir} and {wav2vec} match the official FlashTalk layout")
    return 0


def run_make_tiny(args: argparse.Namespace) -> int:
    model_dir, wav2vec_dir = _needs_torch("tiny_checkpoint").make_tiny(args.root, seed=args.seed)
    print(f"wrote {model_dir} and {wav2vec_dir}")
    return 0


def run_download(args: argparse.Namespace) -> int:
    try:
        from huggingface_hub import snapshot_download
        from huggingface_hub.errors import HfHubHTTPError
    except ImportError:
        raise UserError("downloading needs huggingface_hub: pip install 'flashtalk-studio[flashtalk]'") from None
    for folder, repo in OFFICIAL_REPOS.items():
        target = args.root / folder
        print(f"downloading {repo} -> {target} (resumes if interrupted)")
        try:
            snapshot_download(repo_id=repo, local_dir=target)
        except (HfHubHTTPError, OSError) as exc:
            raise UserError(f"could not download {repo}: {str(exc).splitlines()[0]} - check the network "
                            "connection, or copy the folders by hand and run `flashtalk models check`") from None
    return run_check(argparse.Namespace(model_dir=args.root / MODEL_FOLDER, wav2vec=None))
