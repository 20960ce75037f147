"""Tiny QDQ models for judging quantized folds in quantization steps (issue 24), folded by hand.

Original::

    x -> Q -> DQ -> Conv(DQ(int8 W, per-channel scale), DQ(int32 bias)) -> BN -> Relu -> Q(y1)
      -> DQ -> Conv(DQ(int8 W2), DQ(int32 b2)) -> Q -> ``q_out`` (int8)  and  DQ -> ``f_out``

The exact fold (what a quantized BN fold writes; no bnfold engine): ``s = gamma/sqrt(var+eps)``
(positive here), ``t = beta - mean*s``; the weight keeps its int8 values and its DQ scale
becomes ``scale*s``; the int32 bias is quantized again at its new scale
``x_scale*scale*s``: ``b' = round((s*b + t) / (x_scale*scale*s))``. The Conv takes the BN's
output name. The corrupted fold: the exact one with one channel's weight scale x 1.05.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

IR_VERSION = 10
OPSET = 13


class QdqConvBN:
    """The original, its exact fold and a corrupted fold (``corrupt_channel`` x ``factor``)."""

    def __init__(self, seed: int = 0, cin: int = 4, cout: int = 8, size: int = 12) -> None:
        rng = np.random.default_rng(seed)
        self.cin, self.cout, self.size = cin, cout, size
        self.x_scale = np.float32(4.0 / 255)  # inputs in [-2, 2]
        self.x_zero = np.int8(0)
        w = rng.standard_normal((cout, cin, 3, 3)).astype(np.float32) * 0.3
        self.w_scale = (np.abs(w).reshape(cout, -1).max(axis=1) / 127).astype(np.float32)
        self.w_int = np.clip(np.round(w / self.w_scale[:, None, None, None]), -127, 127).astype(
            np.int8
        )
        self.b_int = rng.integers(-2000, 2000, cout).astype(np.int32)
        self.gamma = rng.uniform(0.5, 2.0, cout).astype(np.float32)
        self.beta = rng.standard_normal(cout).astype(np.float32) * 0.5
        self.mean = rng.standard_normal(cout).astype(np.float32) * 0.5
        self.var = rng.uniform(0.5, 2.0, cout).astype(np.float32)
        self.eps = 1e-5
        self.y_scale = np.float32(8.0 / 255)  # uint8 after Relu: [0, 8]
        w2 = rng.standard_normal((cout, cout, 1, 1)).astype(np.float32) * 0.3
        self.w2_scale = (np.abs(w2).reshape(cout, -1).max(axis=1) / 127).astype(np.float32)
        self.w2_int = np.clip(np.round(w2 / self.w2_scale[:, None, None, None]), -127, 127).astype(
            np.int8
        )
        self.b2_int = rng.integers(-200, 200, cout).astype(np.int32)
        self.out_scale = np.float32(12.0 / 255)
        self.out_zero = np.int8(0)

    # -- the fold by hand --------------------------------------------------------------------
    def bn_scale_shift(self) -> tuple[np.ndarray, np.ndarray]:
        s = (self.gamma / np.sqrt(self.var.astype(np.float64) + self.eps)).astype(np.float64)
        t = self.beta.astype(np.float64) - self.mean.astype(np.float64) * s
        return s, t

    def folded_params(self) -> tuple[np.ndarray, np.ndarray]:
        """(weight scale', int32 bias') of the exact fold."""
        s, t = self.bn_scale_shift()
        scale = (self.w_scale.astype(np.float64) * s).astype(np.float32)
        bias = self.b_int.astype(np.float64) * float(self.x_scale) * self.w_scale * s + t
        bias_scale = float(self.x_scale) * scale.astype(np.float64)
        return scale, np.round(bias / bias_scale).astype(np.int32)

    # -- models ------------------------------------------------------------------------------
    def original(self) -> onnx.ModelProto:
        bn = helper.make_node(
            "BatchNormalization",
            ["conv1", "bn_gamma", "bn_beta", "bn_mean", "bn_var"],
            ["bn1"],
            name="bn1",
            epsilon=self.eps,
        )
        extra = {
            "bn_gamma": self.gamma,
            "bn_beta": self.beta,
            "bn_mean": self.mean,
            "bn_var": self.var,
        }
        return self._model(self.w_scale, self.b_int, "conv1", [bn], extra)

    def folded(self) -> onnx.ModelProto:
        scale, bias = self.folded_params()
        return self._model(scale, bias, "bn1", [], {})

    def corrupted(self, channel: int = 2, factor: float = 1.05) -> onnx.ModelProto:
        scale, bias = self.folded_params()
        scale = scale.copy()
        scale[channel] = np.float32(scale[channel] * factor)
        return self._model(scale, bias, "bn1", [], {})

    def _model(
        self,
        w_scale: np.ndarray,
        b_int: np.ndarray,
        conv_out: str,
        bn_nodes: list[onnx.NodeProto],
        extra: dict[str, np.ndarray],
    ) -> onnx.ModelProto:
        init = {
            "x_scale": self.x_scale,
            "x_zero": self.x_zero,
            "w1_q": self.w_int,
            "w1_scale": w_scale.astype(np.float32),
            "w1_zero": np.zeros(self.cout, np.int8),
            "b1_q": b_int,
            "b1_scale": (float(self.x_scale) * w_scale.astype(np.float64)).astype(np.float32),
            "b1_zero": np.zeros(self.cout, np.int32),
            "y_scale": self.y_scale,
            "y_zero": np.uint8(0),
            "w2_q": self.w2_int,
            "w2_scale": self.w2_scale,
            "w2_zero": np.zeros(self.cout, np.int8),
            "b2_q": self.b2_int,
            "b2_scale": (float(self.y_scale) * self.w2_scale.astype(np.float64)).astype(np.float32),
            "b2_zero": np.zeros(self.cout, np.int32),
            "out_scale": self.out_scale,
            "out_zero": self.out_zero,
            **extra,
        }
        node = helper.make_node
        nodes = [
            node("QuantizeLinear", ["x", "x_scale", "x_zero"], ["x_q"], name="q_x"),
            node("DequantizeLinear", ["x_q", "x_scale", "x_zero"], ["x_dq"], name="dq_x"),
            node("DequantizeLinear", ["w1_q", "w1_scale", "w1_zero"], ["w1"], name="dq_w1", axis=0),
            node("DequantizeLinear", ["b1_q", "b1_scale", "b1_zero"], ["b1"], name="dq_b1", axis=0),
            node("Conv", ["x_dq", "w1", "b1"], [conv_out], name="conv1", pads=[1, 1, 1, 1]),
            *bn_nodes,
            node("Relu", ["bn1"], ["relu1"], name="relu1"),
            node("QuantizeLinear", ["relu1", "y_scale", "y_zero"], ["y1_q"], name="q_y1"),
            node("DequantizeLinear", ["y1_q", "y_scale", "y_zero"], ["y1_dq"], name="dq_y1"),
            node("DequantizeLinear", ["w2_q", "w2_scale", "w2_zero"], ["w2"], name="dq_w2", axis=0),
            node("DequantizeLinear", ["b2_q", "b2_scale", "b2_zero"], ["b2"], name="dq_b2", axis=0),
            node("Conv", ["y1_dq", "w2", "b2"], ["conv2"], name="conv2"),
            node("QuantizeLinear", ["conv2", "out_scale", "out_zero"], ["q_out"], name="q_out"),
            node("DequantizeLinear", ["q_out", "out_scale", "out_zero"], ["f_out"], name="dq_out"),
        ]
        shape = [1, self.cin, self.size, self.size]
        out_shape = [1, self.cout, self.size, self.size]
        graph = helper.make_graph(
            nodes,
            "qdq_judge",
            [helper.make_tensor_value_info("x", TensorProto.FLOAT, shape)],
            [
                helper.make_tensor_value_info("q_out", TensorProto.INT8, out_shape),
                helper.make_tensor_value_info("f_out", TensorProto.FLOAT, out_shape),
            ],
            [numpy_helper.from_array(np.asarray(v), k) for k, v in init.items()],
        )
        model = helper.make_model(
            graph, opset_imports=[helper.make_opsetid("", OPSET)], ir_version=IR_VERSION
        )
        onnx.checker.check_model(model, full_check=True)
        return model
