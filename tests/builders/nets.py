"""Small torch networks with BatchNormalization, and exporters that keep the BN nodes.

Shared by the torch-based tests and by ``models/make_models.py``. Every net is built in eval
mode with random (seeded) BN statistics and affine parameters, so that a wrong fold changes
the output visibly: with torch's defaults (γ=1, β=0, μ=0, σ²=1) a BN is nearly the identity
and a fold that forgets the shift or scales the wrong axis would still pass.

Exporter findings for torch 2.13 (checked on this machine):

* ``torch.onnx.export(..., dynamo=False)`` (TorchScript) with the default
  ``do_constant_folding=True`` folds BN into Conv/Gemm itself: no BN is left to test.
* ``dynamo=False, do_constant_folding=False`` keeps every BN (``training_mode=0``).
  ``training=TrainingMode.PRESERVE`` keeps them too (the module is in eval mode, so the BN
  is still an inference BN). We use ``do_constant_folding=False``.
  The exporter de-duplicates equal initializers: with default BN statistics
  ``running_var`` becomes ``Identity(weight)`` and ``running_mean`` ``Identity(bias)``.
  It writes IR version 8.
* The TorchScript exporter cannot export ``track_running_stats=False`` (batch statistics in
  eval mode) with a symbolic batch dim; with a fixed one it writes ``training_mode=1``.
* ``dynamo=True`` (the default) needs the ``onnxscript`` package; with it, ``optimize=False``
  is what keeps BN (the default optimizer folds Conv+BN: none is left). It writes IR 10 and
  opset 18 at the least (asked for 17 it runs a version converter that fails on Pad and keeps
  18). Its graphs differ from TorchScript's: a bias-free Conv gets a zero bias computed as
  ``Expand(CastLike(0, x), Expand(Shape(W)[0:1], [1]))``; an ``affine=False`` BN gets
  γ = ``Expand(CastLike(1, y), Shape(y)[1:2])`` read off the Conv output ``y``; batch
  statistics are computed with ReduceMean instead of ``training_mode=1``. With a bias-free
  *Conv3d* its zero bias has shape [C_out, 2] (``Concat(Shape(W)[0:1], [2])``), which
  onnxruntime rejects: an exporter bug. When onnxscript is not installed the dynamo variant
  is skipped with that reason (see ``exporter_unavailable``).
"""

from __future__ import annotations

import contextlib
import importlib.util
import io
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from unittest import mock

import numpy as np
import onnx
import torch
from torch import nn

MAX_IR_VERSION = 10  # onnxruntime 1.31 reads IR <= 13; keep to what older runtimes read too
OPSET = 17  # TorchScript exporter
# The dynamo exporter's lowest: asked for 17 it runs a version converter that fails on Pad.
DYNAMO_OPSET = 18

# --------------------------------------------------------------------------------------------
# BN statistics


def randomize_batchnorm(net: nn.Module, seed: int = 0) -> nn.Module:
    """Give every BN random running stats and affine params (σ² > 0, γ of both signs)."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module in net.modules():
            if isinstance(module, nn.modules.batchnorm._BatchNorm):
                c = module.num_features
                sign = torch.where(torch.rand(c, generator=generator) < 0.25, -1.0, 1.0)
                gamma = sign * (0.5 + torch.rand(c, generator=generator))
                beta = 0.5 * torch.randn(c, generator=generator)
                mean = 0.5 * torch.randn(c, generator=generator)
                var = 0.3 + 2.0 * torch.rand(c, generator=generator)
                # affine=False: no weight/bias; track_running_stats=False: no running stats
                for tensor, value in ((module.weight, gamma), (module.bias, beta)):
                    if tensor is not None:
                        tensor.copy_(value)
                if module.running_mean is not None:
                    module.running_mean.copy_(mean)
                    module.running_var.copy_(var)
    return net.eval()


# --------------------------------------------------------------------------------------------
# Networks


def conv_bn_relu(
    cin: int, cout: int, k: int = 3, stride: int = 1, groups: int = 1
) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, k, stride, k // 2, groups=groups, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU(),
    )


class BasicBlock(nn.Module):
    """ResNet basic block: two 3x3 Conv-BN, residual add, 1x1 Conv+BN downsample if needed."""

    def __init__(self, cin: int, cout: int, stride: int = 1) -> None:
        super().__init__()
        self.body = nn.Sequential(
            conv_bn_relu(cin, cout, 3, stride),
            nn.Conv2d(cout, cout, 3, 1, 1, bias=False),
            nn.BatchNorm2d(cout),
        )
        self.down = (
            nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))
            if stride != 1 or cin != cout
            else nn.Identity()
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.body(x) + self.down(x))


class ResNetTiny(nn.Module):
    """Stem Conv-BN-ReLU + MaxPool, an identity block, a strided block with downsample, head."""

    def __init__(self, width: int = 8, classes: int = 10) -> None:
        super().__init__()
        self.stem = nn.Sequential(conv_bn_relu(3, width, 3, 2), nn.MaxPool2d(2))
        self.blocks = nn.Sequential(BasicBlock(width, width), BasicBlock(width, 2 * width, 2))
        self.head = nn.Sequential(
            nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(2 * width, classes)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.blocks(self.stem(x)))


class MobileNetTiny(nn.Module):
    """MobileNet-style: depthwise Conv (groups=C) + BN + ReLU6, pointwise Conv + BN (+ReLU6)."""

    def __init__(self) -> None:
        super().__init__()

        def dw_pw(cin: int, cout: int, stride: int) -> nn.Sequential:
            return nn.Sequential(
                nn.Conv2d(cin, cin, 3, stride, 1, groups=cin, bias=False),
                nn.BatchNorm2d(cin),
                nn.ReLU6(),
                nn.Conv2d(cin, cout, 1, bias=False),
                nn.BatchNorm2d(cout),
            )

        self.stem = nn.Sequential(nn.Conv2d(3, 8, 3, 2, 1), nn.BatchNorm2d(8), nn.ReLU6())
        self.block1 = dw_pw(8, 16, 2)
        self.block2 = dw_pw(16, 16, 1)  # inverted-residual style: linear bottleneck + add

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = torch.nn.functional.relu6(self.block1(self.stem(x)))
        return y + self.block2(y)


class UNetDecoderTiny(nn.Module):
    """UNet-style: encoder Conv-BN-ReLU, ConvTranspose(stride 2)+BN decoder with a skip concat.

    ``up1``: bias, output_padding=1; ``up2``: no bias, groups=2, output_padding=1.
    """

    def __init__(self) -> None:
        super().__init__()
        self.enc1 = conv_bn_relu(3, 8)
        self.enc2 = conv_bn_relu(8, 16, stride=2)
        self.enc3 = conv_bn_relu(16, 16, stride=2)
        self.up1 = nn.ConvTranspose2d(16, 8, 3, stride=2, padding=1, output_padding=1, bias=True)
        self.bn1 = nn.BatchNorm2d(8)
        self.up2 = nn.ConvTranspose2d(
            24, 6, 3, stride=2, padding=1, output_padding=1, groups=2, bias=False
        )
        self.bn2 = nn.BatchNorm2d(6)
        self.out = nn.Conv2d(6 + 8, 2, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        e1 = self.enc1(x)
        e2 = self.enc2(e1)
        d1 = torch.relu(self.bn1(self.up1(self.enc3(e2))))
        d2 = torch.relu(self.bn2(self.up2(torch.cat([d1, e2], 1))))
        return self.out(torch.cat([d2, e1], 1))


class MLPAfter(nn.Module):
    """Linear -> BatchNorm1d -> ReLU, twice, then Linear: every BN has a Linear producer."""

    def __init__(self, features: int = 12, hidden: int = 16, classes: int = 5) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(features, hidden),
            nn.BatchNorm1d(hidden),
            nn.ReLU(),
            nn.Linear(hidden, hidden, bias=False),
            nn.BatchNorm1d(hidden),
            nn.ReLU(),
            nn.Linear(hidden, classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class MLPBefore(nn.Module):
    """BatchNorm1d *before* each Linear (on the input, and after a ReLU) plus one after.

    The two "before" BNs have no linear producer (a graph input, a ReLU): they can only be
    folded into the following Linear, a consumer fold (``z = W·(s·x + t) + b``). The last BN
    follows a Linear and folds into it as a producer fold.
    """

    before = 2  # BNs that only a consumer fold can remove

    def __init__(self, features: int = 12, hidden: int = 16, classes: int = 5) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.BatchNorm1d(features),
            nn.Linear(features, hidden),
            nn.ReLU(),
            nn.BatchNorm1d(hidden),
            nn.Linear(hidden, classes),
            nn.BatchNorm1d(classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class InputBNConv(nn.Module):
    """BN on the graph input, then Conv *without* padding (a consumer fold is exact), then a
    producer BN."""

    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.BatchNorm2d(3), nn.Conv2d(3, 8, 3, groups=1), nn.BatchNorm2d(8), nn.ReLU()
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class InputBNPaddedConv(nn.Module):
    """BN on the graph input, then Conv with zero padding: the padded border would see the
    BN shift after a consumer fold, so the BN must stay."""

    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.BatchNorm2d(3), nn.Conv2d(3, 4, 3, padding=1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class Conv1dNet(nn.Module):
    """Conv1d + BatchNorm1d (on N,C,L), one with bias, one strided without."""

    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv1d(4, 8, 5, padding=2),
            nn.BatchNorm1d(8),
            nn.ReLU(),
            nn.Conv1d(8, 8, 3, stride=2, bias=False),
            nn.BatchNorm1d(8),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class Conv3dNet(nn.Module):
    """Conv3d + BatchNorm3d, the second one grouped."""

    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv3d(2, 4, 3, padding=1),
            nn.BatchNorm3d(4),
            nn.ReLU(),
            nn.Conv3d(4, 6, 3, stride=(1, 2, 2), groups=2, bias=False),
            nn.BatchNorm3d(6),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class SequenceLinearBN(nn.Module):
    """Linear on (N, L, F), then BatchNorm1d over F via Transpose: MatMul -> (Add) -> Transpose -> BN.

    L == F == hidden on purpose: onnxruntime's own fold gets MatMul -> Transpose -> BN wrong
    when the two trailing dims are equal, and an axis mix-up would hide behind a square shape.
    """

    def __init__(self, size: int = 8) -> None:
        super().__init__()
        self.lin1 = nn.Linear(size, size)
        self.bn1 = nn.BatchNorm1d(size)
        self.lin2 = nn.Linear(size, size, bias=False)
        self.bn2 = nn.BatchNorm1d(size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = torch.relu(self.bn1(self.lin1(x).transpose(1, 2)).transpose(1, 2))
        return self.bn2(self.lin2(y).transpose(1, 2))


class SharedConv(nn.Module):
    """One Conv module used twice (the export shares its weight), a different BN after each."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.bn_a = nn.BatchNorm2d(4)
        self.bn_b = nn.BatchNorm2d(4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bn_a(self.conv(x)) + self.bn_b(self.conv(torch.tanh(x)))


class DilatedReflect(nn.Module):
    """Reflect padding (Pad subgraph) + dilated grouped Conv, dilated grouped ConvTranspose."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 6, 3, padding=2, dilation=2, groups=3, padding_mode="reflect")
        self.bn1 = nn.BatchNorm2d(6)
        self.up = nn.ConvTranspose2d(6, 6, 3, stride=2, dilation=2, groups=3, output_padding=1)
        self.bn2 = nn.BatchNorm2d(6)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bn2(self.up(self.bn1(self.conv(x))))


class NoAffine(nn.Module):
    """BN with affine=False (the exporter writes γ=1, β=0 as Constant nodes), then a
    depthwise ConvTranspose (groups=C) + BN."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)
        self.bn1 = nn.BatchNorm2d(4, affine=False)
        self.up = nn.ConvTranspose2d(4, 4, 3, stride=2, groups=4)
        self.bn2 = nn.BatchNorm2d(4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bn2(self.up(self.bn1(self.conv(x))))


class ConvOutputShared(nn.Module):
    """The Conv output feeds the BN *and* an Add: folding would change the Add's input."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)
        self.bn = nn.BatchNorm2d(4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv(x)
        return self.bn(y) + y


class BatchStats(nn.Module):
    """BN with track_running_stats=False: batch statistics even in eval mode. The exporter
    writes ReduceMean subgraphs for μ, σ² and ``training_mode=1``: nothing to fold."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)
        self.bn = nn.BatchNorm2d(4, track_running_stats=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bn(self.conv(x))


# --------------------------------------------------------------------------------------------
# The catalogue the tests iterate over


@dataclass(frozen=True)
class NetCase:
    """A net, an example input shape, and what folding must do to it.

    ``bn_left``: BNs that must stay; ``kept_reasons``: the Skip reasons allowed for them;
    ``consumer_folds``: how many folds go into the following layer (the rest into producers).
    """

    name: str
    build: Callable[[], nn.Module]
    input_shape: tuple[int, ...]
    bn_left: int = 0
    consumer_folds: int = 0
    kept_reasons: frozenset[str] = field(default_factory=frozenset)
    dynamic_batch: bool = True  # export dim 0 as the symbolic "batch"
    random_stats: bool = True  # False: torch's defaults, which the exporter de-duplicates

    def net(self, seed: int = 0) -> nn.Module:
        torch.manual_seed(seed)
        net = self.build().eval()
        return randomize_batchnorm(net, seed) if self.random_stats else net

    def example(self, seed: int = 0) -> torch.Tensor:
        generator = torch.Generator().manual_seed(1000 + seed)
        return torch.randn(self.input_shape, generator=generator)


NETS: tuple[NetCase, ...] = (  # the BN counts are checked by tests, not assumed
    NetCase("resnet", ResNetTiny, (2, 3, 32, 32)),
    NetCase("mobilenet", MobileNetTiny, (2, 3, 32, 32)),
    NetCase("unet", UNetDecoderTiny, (2, 3, 16, 16)),
    NetCase("mlp_after", MLPAfter, (4, 12)),
    NetCase("mlp_before", MLPBefore, (4, 12), consumer_folds=MLPBefore.before),
    NetCase("input_bn_conv", InputBNConv, (2, 3, 10, 10), consumer_folds=1),
    NetCase("conv1d", Conv1dNet, (2, 4, 20)),
    NetCase("conv3d", Conv3dNet, (1, 2, 4, 8, 8)),
    NetCase("seq_linear", SequenceLinearBN, (2, 8, 8)),
    NetCase("shared_conv", SharedConv, (2, 3, 8, 8)),
    # Default statistics: the exporter writes running_var = Identity(weight) and
    # running_mean = Identity(bias), shared by every BN of the same width.
    NetCase("resnet_default_stats", ResNetTiny, (2, 3, 32, 32), random_stats=False),
    NetCase("dilated_reflect", DilatedReflect, (2, 3, 9, 9)),
    NetCase("no_affine", NoAffine, (2, 3, 8, 8)),
    # Refusals: these BNs must stay, each with its reason.
    NetCase(
        "conv_output_shared",
        ConvOutputShared,
        (2, 3, 8, 8),
        bn_left=1,
        kept_reasons=frozenset({"producer-output-shared"}),
    ),
    NetCase(
        "input_bn_padded_conv",
        InputBNPaddedConv,
        (2, 3, 8, 8),
        bn_left=1,
        kept_reasons=frozenset({"padded-consumer"}),
    ),
    # The TorchScript exporter cannot export batch statistics with a symbolic batch dim. It
    # writes training_mode=1; the dynamo exporter computes μ, σ² in the graph instead.
    NetCase(
        "batch_stats",
        BatchStats,
        (2, 3, 8, 8),
        bn_left=1,
        kept_reasons=frozenset({"training-mode", "param-not-constant"}),
        dynamic_batch=False,
    ),
)


# --------------------------------------------------------------------------------------------
# Exporters


def exporter_unavailable(exporter: str) -> str | None:
    """Why ``exporter`` cannot run here, or None when it can."""
    if exporter == "torchscript":
        return None
    if exporter == "dynamo":
        if importlib.util.find_spec("onnxscript") is None:
            return (
                "torch 2.13's dynamo exporter needs the onnxscript package, "
                "which is not installed in this environment"
            )
        return None
    raise ValueError(f"unknown exporter {exporter!r}")


EXPORTERS = ("torchscript", "dynamo")


@contextlib.contextmanager
def _reuse_torchlib_registry() -> Iterator[None]:
    """Build the dynamo exporter's op registry once per process instead of once per export.

    torch 2.13 rebuilds it on every ``torch.onnx.export(dynamo=True)`` call by parsing the
    source of ~500 onnxscript functions: about 1.7 s of a 2 s export of a tiny net. The
    registry is only mutated with a ``custom_translation_table``, which we never pass. A
    private API: when it is not there, exports just take their usual time.
    """
    try:
        from torch.onnx._internal.exporter import _registration
    except ImportError:  # pragma: no cover - other torch versions
        yield
        return
    registry_class = getattr(_registration, "ONNXRegistry", None)
    original = getattr(registry_class, "from_torchlib", None)
    if original is None:  # pragma: no cover
        yield
        return

    def cached(_cls: type, opset_version: int | None = None) -> object:
        key = opset_version
        if key not in _REGISTRIES:
            _REGISTRIES[key] = (
                original() if opset_version is None else original(opset_version=opset_version)
            )
        return _REGISTRIES[key]

    with mock.patch.object(registry_class, "from_torchlib", classmethod(cached)):
        yield


_REGISTRIES: dict[int | None, object] = {}


def export(
    net: nn.Module,
    example: torch.Tensor,
    *,
    exporter: str = "torchscript",
    dynamic_batch: bool = True,
    input_name: str = "input",
    output_name: str = "output",
    batch_name: str = "batch",
    opset: int | None = None,
) -> onnx.ModelProto:
    """Export ``net`` with its BatchNormalization nodes kept; IR version at most 10.

    Raises AssertionError if the exported model holds no BatchNormalization: a test on such
    a model would prove nothing about folding.
    """
    reason = exporter_unavailable(exporter)
    if reason:
        raise RuntimeError(reason)
    net = net.eval()
    if opset is None:
        opset = OPSET if exporter == "torchscript" else DYNAMO_OPSET
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation notices
        if exporter == "torchscript":
            torch.onnx.export(
                net,
                (example,),
                buffer,
                dynamo=False,
                do_constant_folding=False,  # True folds BN into Conv/Gemm at export
                opset_version=opset,
                input_names=[input_name],
                output_names=[output_name],
                dynamic_axes={input_name: {0: batch_name}, output_name: {0: batch_name}}
                if dynamic_batch
                else None,
            )
            model = onnx.load_from_string(buffer.getvalue())
        else:  # pragma: no cover - needs onnxscript
            with _reuse_torchlib_registry():
                program = torch.onnx.export(
                    net,
                    (example,),
                    dynamo=True,
                    optimize=False,  # the optimizer folds Conv/Gemm+BN
                    verbose=False,
                    opset_version=opset,
                    input_names=[input_name],
                    output_names=[output_name],
                    dynamic_shapes=({0: torch.export.Dim(batch_name, min=1)},)
                    if dynamic_batch
                    else None,
                )
            model = program.model_proto
    if model.ir_version > MAX_IR_VERSION:
        model.ir_version = MAX_IR_VERSION
    count = sum(node.op_type == "BatchNormalization" for node in model.graph.node)
    assert count > 0, f"{exporter} export of {type(net).__name__} kept no BatchNormalization"
    onnx.checker.check_model(model, full_check=True)
    return model


def torch_outputs(net: nn.Module, inputs: Sequence[np.ndarray]) -> list[np.ndarray]:
    """The net's outputs on ``inputs`` (numpy in, numpy out), without autograd."""
    with torch.no_grad():
        result = net(*[torch.from_numpy(np.ascontiguousarray(x)) for x in inputs])
    if isinstance(result, torch.Tensor):
        result = (result,)
    return [r.detach().numpy() for r in result]
