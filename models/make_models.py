"""Write the small demo models bundled in models/ (deterministic: fixed seeds).

    .venv/bin/python models/make_models.py            # writes models/*.onnx
    .venv/bin/python models/make_models.py -o DIR     # somewhere else

The nets come from tests/builders/nets.py (eval mode, random BN statistics so folds are visible) and
are exported with torch's TorchScript exporter and ``do_constant_folding=False``, which keeps
every BatchNormalization. Each model has a symbolic batch dim named ``batch`` and IR
version 10.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))  # for tests.builders.nets when run as a script

import onnx  # noqa: E402
import torch  # noqa: E402

from tests.builders import nets  # noqa: E402

IR_VERSION = 10

# name -> (builder, example input shape); batch dim 0 is exported as "batch"
MODELS = {
    "resnet_tiny": (lambda: nets.ResNetTiny(width=16, classes=10), (1, 3, 64, 64)),
    "unet_tiny": (nets.UNetDecoderTiny, (1, 3, 64, 64)),
    "mlp_bn": (lambda: nets.MLPAfter(features=32, hidden=64, classes=10), (1, 32)),
}


def build(name: str, seed: int = 0) -> onnx.ModelProto:
    """The ONNX model ``name`` exported from its torch net with BN kept."""
    make, shape = MODELS[name]
    torch.manual_seed(seed)
    net = nets.randomize_batchnorm(make(), seed)
    example = torch.randn(shape, generator=torch.Generator().manual_seed(seed))
    model = nets.export(net, example, exporter="torchscript", dynamic_batch=True)
    model.ir_version = IR_VERSION
    model.doc_string = f"bnfold demo model {name}: made by models/make_models.py"
    onnx.checker.check_model(model, full_check=True)
    return model


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-o", "--output-dir", type=Path, default=HERE)
    args = parser.parse_args(argv)
    args.output_dir.mkdir(parents=True, exist_ok=True)
    for name in MODELS:
        model = build(name)
        path = args.output_dir / f"{name}.onnx"
        onnx.save_model(model, path)
        bn = sum(n.op_type == "BatchNormalization" for n in model.graph.node)
        print(f"{path}: {path.stat().st_size / 1024:.1f} KiB, {bn} BatchNormalization")
    return 0


if __name__ == "__main__":
    sys.exit(main())
