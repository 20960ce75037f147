"""Target profiles: which folds and lowerings a deployment wants (``--target NAME``).

One fp32 rule does not fit every deployment. A profile is one table: a row per situation
where deployments disagree, each with the decision and the evidence for it (the same table,
with links, is the README's "Target profiles" section). What no row names is the same for every profile: every
exact fold the patterns find, every refusal they give.

| rule | ``default`` | ``quantize`` | ``npu`` |
| --- | --- | --- | --- |
| ``split_feature_maps``: Conv → activation → BN on a 4-D map, the scale into the Conv and the shift kept as one Add | kept (``slower-at-level-all``) | folded | folded |
| ``lower_kept``: a BN nothing folds into | kept (``--lower-standalone`` lowers) | 1×1 depthwise Conv (Mul + Add below rank 3) | the same |
| ``bias_across_noop_casts``: a fold into a MatMul whose bias Add sits behind no-op Casts (Keras 3 on torch: MatMul → Cast → Add) adds ``W·t`` to that bias | a new Add (two in a row once the Cast goes) | into the bias | into the bias |
| ``weight_ranges``: per fold, each output channel's weight range and int8 rounding error | - | reported | reported |
| ``kept_batchnorm_fails``: ``check`` fails on a BN that stays | no | yes | yes |

A profile that lowers kept BNs refuses one it cannot lower with ``not-lowerable`` (rank
unknown, or a dtype neither form runs in).
"""

from __future__ import annotations

from dataclasses import dataclass

DEFAULT_TARGET = "default"
QUANTIZE_TARGET = "quantize"
NPU_TARGET = "npu"

# The lowered forms, as ``lowering.LOWERING_FORMS`` and ``--lower-as`` name them. Spelled here,
# not imported: the CLI reads TARGET_NAMES while it defines its options, and this module must
# not load numpy and onnx (``lowering`` does) before a command runs. A test holds them equal.
DWCONV, MUL_ADD = "dwconv", "mul-add"

NOT_LOWERABLE = "not-lowerable"  # the refusal a lowering profile adds


@dataclass(frozen=True)
class Profile:
    """One deployment's rules (the module's table); the fields are its rows."""

    name: str
    summary: str
    split_feature_maps: bool
    lower_kept: tuple[str, ...]  # forms to lower a BN nothing folds into, tried in order
    bias_across_noop_casts: bool
    weight_ranges: bool
    kept_batchnorm_fails: bool


PROFILES: dict[str, Profile] = {
    DEFAULT_TARGET: Profile(
        name=DEFAULT_TARGET,
        summary="onnxruntime float on its CPU provider",
        # onnxruntime's NCHWc layout (level all) reorders around a BN (it becomes an NCHWc
        # depthwise Conv) but not around a constant-broadcast Add: the kept shift Add ran
        # slower than the BN it replaced (benchmarks/fold_shapes.md).
        split_feature_maps=False,
        # onnxruntime's own BN kernel is as fast as either lowered form on CPU; lowering is
        # asked for with --lower-standalone (README, benchmarks/fold_shapes.md).
        lower_kept=(),
        # Its output is pinned byte for byte to 0.2.0's (tests/targets/test_default_unchanged).
        bias_across_noop_casts=False,
        weight_ranges=False,
        kept_batchnorm_fails=False,
    ),
    QUANTIZE_TARGET: Profile(
        name=QUANTIZE_TARGET,
        summary="before int8 quantization (onnxruntime quant_pre_process + quantize_static)",
        # quantize_static has no int8 BatchNormalization: on 4 × [Conv 3×3 → Relu → BN]
        # (onnxruntime #9938) every kept BN stays a float island between Q/DQ pairs, while
        # the split quantizes fully (QLinearConv + QLinearAdd): no float op left, cosine to
        # float 0.99955 vs 0.99959 kept, 1.25× at int8 (median of 11 fresh sessions;
        # benchmarks/quantize_forms.md).
        split_feature_maps=True,
        # The same measurement: a BN lowered to a 1×1 depthwise Conv leaves no float op and
        # runs as fast as the split (1.26×); as Mul + Add it quantizes too, with one more
        # QLinearMul per BN, and gains nothing (0.92×).
        # Below rank 3 a Conv cannot express it: Mul + Add, which quantize_static quantizes.
        lower_kept=(DWCONV, MUL_ADD),
        # Keras 3 (torch) writes MatMul → Cast → Add(b): a fold that stops at the Cast adds a
        # second Add, and once the Cast goes, each Add is one more QLinearAdd per BN. Into the
        # bias instead, on the Keras Dense → Relu → BN export (2 BNs): no QLinearAdd left
        # (the new Adds left 2), cosine to float 0.99991 vs 0.99985, int8 1.76× vs 1.60× over
        # onnxruntime alone in the same run (benchmarks/quantize_handoff.md).
        bias_across_noop_casts=True,
        # Folding s into W scales each output channel's range by |s|: under per-tensor int8
        # a channel whose s is small keeps fewer of the 255 steps (issue 25).
        weight_ranges=True,
        # A BN left is a float island in the int8 model.
        kept_batchnorm_fails=True,
    ),
    NPU_TARGET: Profile(
        name=NPU_TARGET,
        summary="NPU and edge compilers: no standalone BatchNormalization",
        # Edge compilers reject or slow down on per-channel Mul/Add left after a linear layer
        # (nncase #146) and on a BN not directly after a conv (GreenWaves gap_sdk #226);
        # OpenCV's new DNN engine folds BN across ReLU and gets it wrong (#28689): the model
        # must arrive with every exact fold done.
        split_feature_maps=True,
        # A quantized standalone BN is rejected by Arm Ethos-U/TOSA lowering (executorch
        # #17241, PR #11148); a 1×1 depthwise Conv is an ordinary convolution instead.
        lower_kept=(DWCONV, MUL_ADD),
        # Per-channel Adds left after a Dense layer are what edge compilers slow down on
        # (nncase #146), and an NPU runs them in int8 as quantize does.
        bias_across_noop_casts=True,
        # An NPU runs the model in int8: the same precision question as quantize.
        weight_ranges=True,
        kept_batchnorm_fails=True,
    ),
}

TARGET_NAMES: tuple[str, ...] = tuple(PROFILES)


def profile(name: str) -> Profile:
    """The profile named ``name`` (one of ``TARGET_NAMES``; ``api`` turns another into a
    usage error before folding)."""
    if name not in PROFILES:
        raise ValueError(f"unknown target {name!r}: choose from {', '.join(TARGET_NAMES)}")
    return PROFILES[name]
