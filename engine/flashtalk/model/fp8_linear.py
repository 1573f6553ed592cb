"""FP8 (e4m3) linear layers for the DiT blocks: half the weight memory, twice the GEMM rate on Hopper.

Weights are quantised once, per output channel; activations per token (row) at every call. On a
GPU with FP8 tensor cores (compute capability 8.9+) the product runs in `torch._scaled_mm` with
row-wise scales, float32 accumulation and a bf16 result. Elsewhere (the CPU, tests) the same
quantised numbers are dequantised and multiplied in float32, so both paths agree up to the order
of accumulation. Only the block linears are converted: embeddings, the head and the time, text,
image and audio projections stay in bf16 (they are <1% of the FLOPs and feed every token).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

FP8_DTYPE = torch.float8_e4m3fn
FP8_MAX = torch.finfo(FP8_DTYPE).max  # 448
AMAX_FLOOR = 1e-12  # an all-zero row (padding) gets a tiny scale instead of a division by zero
SCALED_MM_ALIGNMENT = 16  # _scaled_mm needs in/out features divisible by 16
SCALED_MM_MIN_CAPABILITY = (8, 9)  # Ada and Hopper have FP8 tensor cores
# The linears of one DiTBlock that become FP8, by their official key names.
BLOCK_LINEARS = (
    "self_attn.q", "self_attn.k", "self_attn.v", "self_attn.o",
    "cross_attn.q", "cross_attn.k", "cross_attn.v", "cross_attn.o", "cross_attn.k_img", "cross_attn.v_img",
    "audio_cross_attn.q_linear", "audio_cross_attn.kv_linear", "audio_cross_attn.proj",
    "ffn.0", "ffn.2",
)


def quantize_rows(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """x [M, K] -> (fp8 [M, K], float32 scale [M, 1]) with x ~= fp8 * scale; each row's amax maps to 448."""
    amax = x.float().abs().amax(dim=-1, keepdim=True).clamp(min=AMAX_FLOOR)
    scale = amax / FP8_MAX
    return (x.float() / scale).clamp(-FP8_MAX, FP8_MAX).to(FP8_DTYPE), scale


def scaled_mm_supported(device: torch.device) -> bool:
    """Whether `torch._scaled_mm` with row-wise scales runs on `device` (FP8 tensor cores)."""
    device = torch.device(device)
    return device.type == "cuda" and torch.cuda.get_device_capability(device) >= SCALED_MM_MIN_CAPABILITY


class FP8Linear(nn.Module):
    """y = x W^T + b with W stored as e4m3 [N, K] plus a float32 scale per output channel.

    State dict keys: `weight` (fp8), `weight_scale` (float32 [N]), `bias`. Loading a
    high-precision `weight` (an ordinary Linear's state dict) quantises it on the way in.
    """

    def __init__(self, in_features: int, out_features: int, bias: bool = True,
                 bias_dtype: torch.dtype = torch.bfloat16, device: torch.device | str | None = None,
                 use_scaled_mm: bool = False):
        super().__init__()
        self.in_features, self.out_features = in_features, out_features
        self.use_scaled_mm = use_scaled_mm
        self.register_buffer("weight", torch.empty(out_features, in_features, dtype=FP8_DTYPE, device=device))
        self.register_buffer("weight_scale", torch.ones(out_features, dtype=torch.float32, device=device))
        if bias:
            self.register_buffer("bias", torch.zeros(out_features, dtype=bias_dtype, device=device))
        else:
            self.register_buffer("bias", None)

    @classmethod
    def from_linear(cls, linear: nn.Linear, use_scaled_mm: bool | None = None) -> FP8Linear:
        """Quantise `linear` (any float dtype). use_scaled_mm=None: the FP8 kernel where it runs."""
        weight = linear.weight.detach()
        if use_scaled_mm is None:
            use_scaled_mm = scaled_mm_supported(weight.device)
        bias_dtype = weight.dtype if linear.bias is None else linear.bias.dtype
        out = cls(linear.in_features, linear.out_features, linear.bias is not None, bias_dtype,
                  weight.device, use_scaled_mm)
        out.weight, scale = quantize_rows(weight)
        out.weight_scale = scale[:, 0].contiguous()
        if linear.bias is not None:
            out.bias = linear.bias.detach().clone()
        return out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x [..., K] -> [..., N] in x's dtype."""
        lead = x.shape[:-1]
        x_fp8, x_scale = quantize_rows(x.reshape(-1, self.in_features))  # [M, K] fp8, [M, 1] f32
        if self.use_scaled_mm and x.dtype == torch.bfloat16:
            out = torch._scaled_mm(x_fp8, self.weight.t(),  # [K, N] column-major view of W
                                   scale_a=x_scale, scale_b=self.weight_scale[None],  # [M, 1], [1, N]
                                   bias=self.bias, out_dtype=torch.bfloat16)
        else:
            out = self.dequantized_matmul(x_fp8, x_scale).to(x.dtype)
        return out.reshape(*lead, self.out_features)

    def dequantized_matmul(self, x_fp8: torch.Tensor, x_scale: torch.Tensor) -> torch.Tensor:
        """The FP8 product without FP8 kernels: dequantise both sides, multiply in float32 -> [M, N]."""
        bias = None if self.bias is None else self.bias.float()
        return F.linear(x_fp8.float() * x_scale, self.dequantized_weight(), bias)

    def dequantized_weight(self) -> torch.Tensor:
        """float32 [N, K]: the weight this layer multiplies with."""
        return self.weight.float() * self.weight_scale[:, None]

    def _load_from_state_dict(self, state_dict, prefix, local_metadata, strict, missing_keys,
                              unexpected_keys, error_msgs):
        weight = state_dict.get(prefix + "weight")
        if weight is not None and weight.dtype != FP8_DTYPE:  # a bf16/fp32 Linear checkpoint
            state_dict = dict(state_dict)
            quantized, scale = quantize_rows(weight)  # where the checkpoint tensor is (assign keeps it)
            state_dict[prefix + "weight"], state_dict[prefix + "weight_scale"] = quantized, scale[:, 0]
        super()._load_from_state_dict(state_dict, prefix, local_metadata, strict, missing_keys,
                                      unexpected_keys, error_msgs)

    def extra_repr(self) -> str:
        kernel = "scaled_mm" if self.use_scaled_mm else "dequantized"
        return f"in_features={self.in_features}, out_features={self.out_features}, " \
               f"bias={self.bias is not None}, kernel={kernel}"


def quantize_dit_linears(dit: nn.Module, use_scaled_mm: bool | None = None) -> int:
    """Replace every block's BLOCK_LINEARS with FP8Linear in place -> how many were replaced.

    Layers already in FP8 are skipped; a layer whose sizes the FP8 kernel cannot take (not a
    multiple of 16) stays as it is. Quantise before torch.compile and after any dtype change.
    """
    return sum(quantize_block_linears(block, use_scaled_mm) for block in dit.blocks)


def quantize_block_linears(block: nn.Module, use_scaled_mm: bool | None = None) -> int:
    """quantize_dit_linears for one DiTBlock (a block can be converted as soon as it is loaded)."""
    count = 0
    for name in BLOCK_LINEARS:
        parent_name, _, child = name.rpartition(".")
        parent = block.get_submodule(parent_name)
        layer = getattr(parent, child)
        if not isinstance(layer, nn.Linear) or not _fits_scaled_mm(layer):
            continue
        setattr(parent, child, FP8Linear.from_linear(layer, use_scaled_mm))
        count += 1
    return count


def _fits_scaled_mm(layer: nn.Linear) -> bool:
    return layer.in_features % SCALED_MM_ALIGNMENT == 0 and layer.out_features % SCALED_MM_ALIGNMENT == 0
