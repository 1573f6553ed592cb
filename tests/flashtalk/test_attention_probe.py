"""Choosing the attention kernel: probed in the model's dtype, and any failure of a candidate means
"not here" (a `flash_attn` module without `flash_attn_func` used to raise AttributeError, and the
bf16 probe picked cuDNN for an fp32 model, which then had no kernel at its first attention)."""
from __future__ import annotations

import sys
import types

import pytest

torch = pytest.importorskip("torch")

from engine.flashtalk.model import attention  # noqa: E402


@pytest.fixture
def foreign_flash_attn(monkeypatch):
    """An old or foreign flash_attn build: the module imports but has no flash_attn_func."""
    monkeypatch.setitem(sys.modules, "flash_attn_interface", None)  # no FA3
    monkeypatch.setitem(sys.modules, "flash_attn", types.ModuleType("flash_attn"))
    attention._flash_attn_func.cache_clear()
    attention._backend_runs.cache_clear()
    yield
    attention._flash_attn_func.cache_clear()
    attention._backend_runs.cache_clear()


def test_a_flash_attn_module_without_its_function_is_not_here_not_an_error(foreign_flash_attn):
    assert attention._backend_runs(attention.FLASH_ATTN, "cpu", None, torch.float32) is False
    with pytest.raises(attention.AttentionBackendError, match="does not run on cpu"):
        attention.choose_backend(attention.FLASH_ATTN, "cpu")


def test_the_probe_runs_in_the_dtype_it_is_asked_for():
    """On a CPU: fp32 and bf16 are probed separately, and the choice names the dtype it failed in."""
    attention._backend_runs.cache_clear()
    assert attention.choose_backend(None, "cpu", torch.float32) == attention.CPU_DEFAULT
    assert attention.choose_backend(None, "cpu", torch.bfloat16) == attention.CPU_DEFAULT
    probed = {args[3] for args in _cached_probes()}
    assert {torch.float32, torch.bfloat16} <= probed
    with pytest.raises(attention.AttentionBackendError, match="in float32"):
        attention.choose_backend("cudnn", "cpu", torch.float32)


def test_the_dit_pins_its_kernel_in_its_own_dtype():
    from engine.flashtalk.model.dit import FlashTalkDiT
    attention._backend_runs.cache_clear()
    dit = FlashTalkDiT(**FlashTalkDiT.tiny_config()).to(torch.float32)
    dit.set_attention_backend(None)
    assert any(args[3] == torch.float32 for args in _cached_probes())


def _cached_probes() -> list[tuple]:
    """The (name, device type, index, dtype) the probe has run for since its cache was cleared."""
    seen = []
    for name in attention.BACKENDS:
        for dtype in (torch.float32, torch.bfloat16, torch.float16):
            before = attention._backend_runs.cache_info().hits
            attention._backend_runs(name, "cpu", None, dtype)
            if attention._backend_runs.cache_info().hits > before:
                seen.append((name, "cpu", None, dtype))
    return seen
