"""Target profiles: which folds and lowerings a deployment wants (``--target NAME``).

One fp32 rule does not fit every deployment. ``default`` is onnxruntime float on its CPU
provider (today's rule: a shift that would stay as an ``Add`` on a 4-D feature map is kept
as BN, ``slower-at-level-all``). The other profiles are filled in by issue 25.
"""

from __future__ import annotations

DEFAULT_TARGET = "default"
TARGET_NAMES: tuple[str, ...] = (DEFAULT_TARGET, "quantize", "npu")
