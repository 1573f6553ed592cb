"""The official checkpoint's folder and file names are written once, in weights/checkpoint_layout.py.

Every other engine module (and script) imports them, so a renamed file is one edit. The model
loaders sit below weights/ and name, in their own error messages, the file they expected; they are
the one exception, listed here by name.
"""
from __future__ import annotations

import ast

from engine.flashtalk.weights import checkpoint_layout
from tests.conftest import ROOT

LAYOUT = ROOT / "engine/flashtalk/weights/checkpoint_layout.py"
MODEL_LOADERS = {ROOT / "engine/flashtalk/model" / name for name in ("t5.py", "clip.py", "vae.py", "wav2vec.py")}
NAMES = {value for key, value in vars(checkpoint_layout).items()
         if key.isupper() and isinstance(value, str) and not key.endswith(("_CONFIG", "_GLOB"))}


def _code_strings(tree: ast.Module):
    """String constants that are not docstrings."""
    docstrings = {id(node.body[0].value) for node in ast.walk(tree)
                  if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef)
                  and node.body and isinstance(node.body[0], ast.Expr)
                  and isinstance(node.body[0].value, ast.Constant)}
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings:
            yield node


def test_the_layout_names_each_file_once():
    assert {"SoulX-FlashTalk-14B", "chinese-wav2vec2-base", "Wan2.1_VAE.pth", "google/umt5-xxl"} <= NAMES
    found = []
    for path in sorted((ROOT / "engine").rglob("*.py")) + sorted((ROOT / "scripts").rglob("*.py")):
        if path == LAYOUT or path in MODEL_LOADERS:
            continue
        for node in _code_strings(ast.parse(path.read_text(), str(path))):
            found += [f"{path.relative_to(ROOT)}:{node.lineno}: {name}" for name in NAMES if name in node.value]
    assert not found, "\n".join(found)
