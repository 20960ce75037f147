"""Generate the benchmark models into ``benchmarks/work/models/`` (reused when already there).

Models (see ``MODELS``):

* ``chain-*``: N blocks of ``Conv(C->C, 3x3, pads 1, no bias) -> BatchNormalization -> Relu``,
  built directly with ``onnx.helper`` + numpy (IR version 10, opset 17, float32). The weights
  are written straight to disk, never held as one big ModelProto, so even the > 2 GiB model
  takes seconds and little memory. ``*-ext`` models keep every tensor of 1 KiB or more in
  one external data file ``<name>.onnx.data`` (like ``onnx.save(..., size_threshold=1024)``).
* ``torch-*``: small torch networks in eval mode with random BN statistics, exported with the
  TorchScript exporter (``dynamo=False, do_constant_folding=False``, which keeps every BN) and,
  for one of them, the dynamo exporter with ``optimize=False``.
* ``light-*``: the onnx package's own backend-test models that contain BatchNormalization
  (IR 3, opset 9; their weights are ``ConstantOfShape`` outputs, not initializers).

Each generated model gets a ``<file>.meta.json`` with the spec it was made from; a model whose
spec has not changed is not regenerated.

Usage: ``python benchmarks/make_models.py [--quick] [--work DIR] [NAME ...]`` (prints the paths).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper

HERE = Path(__file__).resolve().parent
WORK = HERE / "work"
MODEL_DIR = WORK / "models"
GENERATOR_VERSION = 4
IR_VERSION = 10
OPSET = 17
EXTERNAL_THRESHOLD = 1024
# He-initialised weights with made-up BN statistics grow the activations by a few percent per
# block; over 50 blocks that is a factor of ~20, and float32 rounding then exceeds verify's
# default float32 tolerances (atol = rtol = 1e-4) even for onnxruntime's own Conv+BN fusion of
# the unmodified model. Damping the weights keeps the output O(1).
GAIN = 0.94


@dataclass(frozen=True)
class ModelSpec:
    """One benchmark model: how to make it and how the benchmark treats it."""

    name: str
    kind: str  # chain | torch | light
    quick: bool = False
    params: dict = field(default_factory=dict)
    # Timed rounds of the (onnx-io, bnfold) pair; other tools run once.
    repeat: int = 1
    description: str = ""

    @property
    def path(self) -> Path:
        return MODEL_DIR / f"{self.name}.onnx"


def _chain(
    name: str,
    channels: int,
    blocks: int,
    hw: int,
    external: bool,
    bn_blocks: int | None = None,
    **kw,
) -> ModelSpec:
    size_mb = channels * channels * 9 * 4 * blocks / 1e6
    params = dict(channels=channels, blocks=blocks, hw=hw, external=external)
    bn = "+ BN "
    if bn_blocks is not None:
        params["bn_blocks"] = bn_blocks
        bn = f"(+ BN in the last {bn_blocks} only) "
    return ModelSpec(
        name,
        "chain",
        params=params,
        description=(
            f"{blocks} x (Conv {channels}->{channels} 3x3, no bias) {bn}+ Relu, "
            f"{size_mb:.0f} MB of weights, input 1x{channels}x{hw}x{hw}"
            + (", external data" if external else ", one file")
        ),
        **kw,
    )


MODELS: list[ModelSpec] = [
    _chain("chain-64x50", 64, 50, 16, False, quick=True),
    ModelSpec(
        "torch-resnet",
        "torch",
        quick=True,
        params=dict(net="resnet", exporter="torchscript"),
        description="ResNet-18-like (widths 32-256), 1x3x64x64, TorchScript exporter",
    ),
    ModelSpec(
        "torch-mobilenet",
        "torch",
        quick=True,
        params=dict(net="mobilenet", exporter="torchscript"),
        description="MobileNetV2-like (depthwise, ReLU6, residuals), 1x3x64x64, TorchScript exporter",
    ),
    ModelSpec(
        "torch-resnet-dynamo",
        "torch",
        params=dict(net="resnet", exporter="dynamo"),
        description="the same ResNet-18-like net, dynamo exporter with optimize=False",
    ),
    ModelSpec("light-resnet50", "light", quick=True, params=dict(file="light_resnet50.onnx")),
    ModelSpec("light-shufflenet", "light", params=dict(file="light_shufflenet.onnx")),
    ModelSpec("light-inception_v2", "light", params=dict(file="light_inception_v2.onnx")),
    ModelSpec("light-densenet121", "light", params=dict(file="light_densenet121.onnx")),
    _chain("chain-512x50", 512, 50, 8, False, repeat=3),
    _chain("chain-512x50-ext", 512, 50, 8, True),
    # 64 x 37.7 MB = 2.42 GB > 2 GiB: over protobuf's limit (issue 16's 2.4 GB-class model).
    _chain("chain-1024x64-ext", 1024, 64, 4, True, repeat=3),
    # The same size, but only 4 of 57 weights change: what the untouched tensors cost.
    _chain("partial-1024x57-ext", 1024, 57, 4, True, bn_blocks=4),
]
# Run only when named (``--models tiny-8x2``), never by default: the smoke test's model
# (tests/benchmarks/test_smoke.py), small enough that every step takes well under a second.
EXTRA: list[ModelSpec] = [_chain("tiny-8x2", 8, 2, 8, False)]
BY_NAME = {spec.name: spec for spec in [*MODELS, *EXTRA]}


def use_work(folder: Path) -> None:
    """Write the models under ``folder/models`` instead of ``benchmarks/work/models``."""
    global WORK, MODEL_DIR
    WORK, MODEL_DIR = folder, folder / "models"


# --------------------------------------------------------------------------------------------
# Conv + BN chains


def make_chain(
    path: Path,
    channels: int,
    blocks: int,
    hw: int,
    external: bool,
    gain: float = GAIN,
    bn_blocks: int | None = None,
) -> None:
    """Write the chain model to ``path``, streaming the weights (external data or not)."""
    rng = np.random.default_rng(0)
    nodes = []
    initializers: list[TensorProto] = []
    data_name = f"{path.name}.data"
    data_tmp = path.with_name(data_name + ".tmp")
    data_file = open(data_tmp, "wb") if external else None  # noqa: SIM115
    std = gain * np.sqrt(2.0 / (channels * 9))  # He init, damped: see GAIN

    def add(name: str, array: np.ndarray) -> None:
        array = np.ascontiguousarray(array, dtype=np.float32)
        if data_file is None or array.nbytes < EXTERNAL_THRESHOLD:
            initializers.append(onnx.numpy_helper.from_array(array, name))
            return
        offset = data_file.tell()
        pad = (-offset) % 4096  # page-aligned, as onnx's writer does: onnxruntime can mmap it
        data_file.write(b"\0" * pad)
        offset += pad
        data_file.write(array.tobytes())
        tensor = TensorProto(name=name, data_type=TensorProto.FLOAT, dims=array.shape)
        tensor.data_location = TensorProto.EXTERNAL
        for key, value in (("location", data_name), ("offset", offset), ("length", array.nbytes)):
            entry = tensor.external_data.add()
            entry.key, entry.value = key, str(value)
        initializers.append(tensor)

    x = "input"
    for i in range(blocks):
        weight = rng.standard_normal((channels, channels, 3, 3), dtype=np.float32) * std
        add(f"conv{i}.weight", weight)
        has_bn = bn_blocks is None or i >= blocks - bn_blocks
        nodes.append(
            helper.make_node(
                "Conv",
                [x, f"conv{i}.weight"],
                [f"conv{i}" if has_bn else f"bn{i}"],
                name=f"conv{i}",
                kernel_shape=[3, 3],
                pads=[1, 1, 1, 1],
            )
        )
        if has_bn:
            add(f"bn{i}.scale", rng.uniform(0.5, 1.5, channels))
            add(f"bn{i}.bias", rng.normal(0.0, 0.1, channels))
            add(f"bn{i}.mean", rng.normal(0.0, 0.1, channels))
            add(f"bn{i}.var", rng.uniform(0.5, 1.5, channels))
            nodes.append(
                helper.make_node(
                    "BatchNormalization",
                    [f"conv{i}", f"bn{i}.scale", f"bn{i}.bias", f"bn{i}.mean", f"bn{i}.var"],
                    [f"bn{i}"],
                    name=f"bn{i}",
                    epsilon=1e-5,
                )
            )
        x_next = "output" if i == blocks - 1 else f"relu{i}"
        nodes.append(helper.make_node("Relu", [f"bn{i}"], [x_next], name=f"relu{i}"))
        x = x_next
    shape = [1, channels, hw, hw]
    graph = helper.make_graph(
        nodes,
        f"conv_bn_chain_{channels}x{blocks}",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, shape)],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, shape)],
        initializers,
    )
    model = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="bnfold-benchmarks"
    )
    model.ir_version = (
        IR_VERSION  # make_model writes 14 with onnx 1.23; onnxruntime 1.31 reads <= 13
    )
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as handle:
        handle.write(model.SerializeToString())
    if data_file is not None:
        data_file.close()
        os.replace(data_tmp, path.with_name(data_name))
    os.replace(tmp, path)


# --------------------------------------------------------------------------------------------
# torch nets


def make_torch(path: Path, net: str, exporter: str) -> None:
    import torch
    from torch import nn

    torch.manual_seed(0)

    def conv_bn(cin: int, cout: int, k: int, stride: int = 1, groups: int = 1) -> list[nn.Module]:
        return [
            nn.Conv2d(cin, cout, k, stride, k // 2, groups=groups, bias=False),
            nn.BatchNorm2d(cout),
        ]

    class Basic(nn.Module):
        def __init__(self, cin: int, cout: int, stride: int) -> None:
            super().__init__()
            self.body = nn.Sequential(
                *conv_bn(cin, cout, 3, stride), nn.ReLU(), *conv_bn(cout, cout, 3)
            )
            self.skip = (
                nn.Sequential(*conv_bn(cin, cout, 1, stride))
                if stride != 1 or cin != cout
                else nn.Identity()
            )

        def forward(self, x):  # type: ignore[no-untyped-def]
            return torch.relu(self.body(x) + self.skip(x))

    class InvertedResidual(nn.Module):
        def __init__(self, cin: int, cout: int, stride: int, expand: int) -> None:
            super().__init__()
            mid = cin * expand
            self.use_res = stride == 1 and cin == cout
            self.body = nn.Sequential(
                *conv_bn(cin, mid, 1),
                nn.ReLU6(),
                *conv_bn(mid, mid, 3, stride, groups=mid),
                nn.ReLU6(),
                *conv_bn(mid, cout, 1),
            )

        def forward(self, x):  # type: ignore[no-untyped-def]
            y = self.body(x)
            return x + y if self.use_res else y

    if net == "resnet":
        widths = [32, 64, 128, 256]
        layers: list[nn.Module] = [*conv_bn(3, 32, 3), nn.ReLU()]
        cin = 32
        for i, w in enumerate(widths):
            layers += [Basic(cin, w, 1 if i == 0 else 2), Basic(w, w, 1)]
            cin = w
        layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(cin, 10), nn.BatchNorm1d(10)]
    elif net == "mobilenet":
        layers = [*conv_bn(3, 16, 3, 2), nn.ReLU6()]
        cin = 16
        for cout, stride, expand in [
            (16, 1, 1),
            (24, 2, 6),
            (24, 1, 6),
            (32, 2, 6),
            (32, 1, 6),
            (64, 2, 6),
            (64, 1, 6),
            (96, 1, 6),
            (160, 2, 6),
            (320, 1, 6),
        ]:
            layers.append(InvertedResidual(cin, cout, stride, expand))
            cin = cout
        layers += [
            *conv_bn(cin, 640, 1),
            nn.ReLU6(),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
            nn.Linear(640, 10),
        ]
    else:
        raise ValueError(net)
    model = nn.Sequential(*layers)
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.modules.batchnorm._BatchNorm):
                c = module.num_features
                module.weight.copy_(0.5 + torch.rand(c, generator=generator))
                module.bias.copy_(0.2 * torch.randn(c, generator=generator))
                module.running_mean.copy_(0.2 * torch.randn(c, generator=generator))
                module.running_var.copy_(0.5 + torch.rand(c, generator=generator))
    model.eval()
    example = torch.randn(1, 3, 64, 64)
    tmp = path.with_name(path.name + ".tmp.onnx")
    if exporter == "torchscript":
        torch.onnx.export(
            model,
            (example,),
            str(tmp),
            dynamo=False,
            do_constant_folding=False,
            input_names=["input"],
            output_names=["output"],
            opset_version=OPSET,
        )
    else:
        program = torch.onnx.export(
            model,
            (example,),
            dynamo=True,
            optimize=False,
            opset_version=18,
            input_names=["input"],
            output_names=["output"],
        )
        program.save(str(tmp))
    exported = onnx.load(str(tmp))
    tmp.unlink()
    if exported.ir_version > IR_VERSION:
        exported.ir_version = IR_VERSION
    count = sum(1 for n in exported.graph.node if n.op_type == "BatchNormalization")
    if count == 0:
        raise RuntimeError(f"{path.name}: the {exporter} exporter kept no BatchNormalization")
    onnx.save(exported, str(path))


# --------------------------------------------------------------------------------------------
# onnx backend-test models


def make_light(path: Path, file: str) -> None:
    source = Path(onnx.__file__).parent / "backend" / "test" / "data" / "light" / file
    shutil.copyfile(source, path)


MAKERS: dict[str, Callable[..., None]] = {
    "chain": make_chain,
    "torch": make_torch,
    "light": make_light,
}


def _meta(spec: ModelSpec) -> dict:
    return {"generator_version": GENERATOR_VERSION, "spec": asdict(spec)}


def model_files(spec: ModelSpec) -> list[Path]:
    files = [spec.path]
    data = spec.path.with_name(spec.path.name + ".data")
    if data.exists():
        files.append(data)
    return files


def ensure(spec: ModelSpec, log: Callable[[str], None] = print) -> Path:
    """Make ``spec``'s model unless an up-to-date one is already there; return its path."""
    MODEL_DIR.mkdir(parents=True, exist_ok=True)
    meta_path = spec.path.with_name(spec.path.name + ".meta.json")
    meta = _meta(spec)
    if spec.path.exists() and meta_path.exists():
        try:
            if json.loads(meta_path.read_text()) == meta:
                return spec.path
        except ValueError:
            pass
    started = time.perf_counter()
    MAKERS[spec.kind](spec.path, **spec.params)
    meta_path.write_text(json.dumps(meta, indent=1))
    size = sum(f.stat().st_size for f in model_files(spec))
    log(f"made {spec.path.name} ({size / 1e6:.1f} MB) in {time.perf_counter() - started:.1f} s")
    return spec.path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "names", nargs="*", help=f"models to make (default all): {', '.join(BY_NAME)}"
    )
    parser.add_argument("--quick", action="store_true", help="only the small models")
    parser.add_argument("--work", default=None, help="write DIR/models (default benchmarks/work)")
    args = parser.parse_args(argv)
    if args.work:
        use_work(Path(args.work).resolve())
    unknown = [n for n in args.names if n not in BY_NAME]
    if unknown:
        parser.error(f"unknown model(s): {', '.join(unknown)}")
    specs = (
        [BY_NAME[n] for n in args.names]
        if args.names
        else [s for s in MODELS if s.quick or not args.quick]
    )
    for spec in specs:
        print(ensure(spec))
    return 0


if __name__ == "__main__":
    sys.exit(main())
