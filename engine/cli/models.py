"""`flashtalk models`: check a checkpoint folder, make a tiny one, download the official ones."""
from __future__ import annotations

import argparse
from pathlib import Path

from engine.cli.common import UserError

OFFICIAL_REPOS = {"SoulX-FlashTalk-14B": "Soul-AILab/SoulX-FlashTalk-14B",
                  "chinese-wav2vec2-base": "TencentGameMate/chinese-wav2vec2-base"}


def add_parser(sub) -> None:
    p = sub.add_parser("models", help="check, make or download FlashTalk checkpoints")
    msub = p.add_subparsers(dest="models_command", required=True)
    c = msub.add_parser("check", help="validate a checkpoint folder without touching a GPU")
    c.add_argument("model_dir", type=Path, help="the SoulX-FlashTalk-14B folder")
    c.add_argument("--wav2vec", type=Path, help="chinese-wav2vec2-base folder (default: beside it)")
    c.set_defaults(run=run_check)
    t = msub.add_parser("make-tiny", help="write a tiny random checkpoint in the official layout")
    t.add_argument("root", type=Path, help="folder to create (gets SoulX-FlashTalk-14B/ and chinese-wav2vec2-base/)")
    t.add_argument("--seed", type=int, default=0)
    t.set_defaults(run=run_make_tiny)
    d = msub.add_parser("download", help="download the official weights (needs network)")
    d.add_argument("root", type=Path, help="folder that gets SoulX-FlashTalk-14B/ and chinese-wav2vec2-base/")
    d.set_defaults(run=run_download)


def _weights():
    try:
        from engine.flashtalk import weights
    except ImportError as exc:
        raise UserError(f"model tools need the flashtalk extra ({exc.name} missing): "
                        "pip install 'flashtalk-studio[flashtalk]'") from None
    return weights


def run_check(args: argparse.Namespace) -> int:
    weights = _weights()
    wav2vec = args.wav2vec or args.model_dir.parent / "chinese-wav2vec2-base"
    try:
        weights.validate_model_dir(args.model_dir, wav2vec)
    except weights.CheckpointError as exc:
        raise UserError(str(exc)) from None
    print(f"ok: {args.model_dir} and {wav2vec} match the official FlashTalk layout")
    return 0


def run_make_tiny(args: argparse.Namespace) -> int:
    weights = _weights()
    model_dir, wav2vec_dir = weights.make_tiny(args.root, seed=args.seed)
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
    return run_check(argparse.Namespace(model_dir=args.root / "SoulX-FlashTalk-14B", wav2vec=None))
