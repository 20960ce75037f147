"""Small models for the reliability tests: one good Conv+BN, and ways to break it.

Each ``broken_*`` function returns a ModelProto that ``onnx.save`` can write but that is not a
valid model; the loader must refuse it with a one-line reason.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from tests.builders.graphs import make_model, random_bn_params, tensor

BN_NAMES = ["gamma", "beta", "mean", "var"]


def conv_bn(
    *,
    channels: int = 4,
    params: list[np.ndarray] | None = None,
    epsilon: float = 1e-5,
    weight_scale: int = 1,
) -> onnx.ModelProto:
    """``x -> Conv -> BatchNormalization -> z``; ``weight_scale`` > 1 makes a bigger weight."""
    rng = np.random.default_rng(7)
    c_in = 3 * weight_scale
    weight = rng.standard_normal([channels, c_in, 3, 3]).astype(np.float32)
    bias = rng.standard_normal(channels).astype(np.float32)
    bn_params = params if params is not None else random_bn_params(rng, channels)
    nodes = [
        helper.make_node("Conv", ["x", "W", "b"], ["y"], name="conv", pads=[1, 1, 1, 1]),
        helper.make_node("BatchNormalization", ["y", *BN_NAMES], ["z"], name="bn", epsilon=epsilon),
    ]
    return make_model(
        nodes,
        [tensor("x", [1, c_in, 8, 8])],
        [tensor("z", [1, channels, 8, 8])],
        [weight, bias, *bn_params],
        names=["W", "b", *BN_NAMES],
    )


def copy(model: onnx.ModelProto) -> onnx.ModelProto:
    duplicate = onnx.ModelProto()
    duplicate.CopyFrom(model)
    return duplicate


def with_cycle() -> onnx.ModelProto:
    """Conv reads the Relu that reads the BN that reads the Conv."""
    model = copy(conv_bn())
    model.graph.node[0].input[0] = "loop"
    model.graph.node.append(helper.make_node("Relu", ["z"], ["loop"], name="relu"))
    return model


def with_dangling_input() -> onnx.ModelProto:
    model = copy(conv_bn())
    model.graph.node[1].input[0] = "nobody_makes_this"
    return model


def with_duplicate_producer() -> onnx.ModelProto:
    """Two nodes write tensor 'y'."""
    model = copy(conv_bn())
    model.graph.node.insert(1, helper.make_node("Relu", ["x"], ["y"], name="relu"))
    return model


def with_unknown_standard_op() -> onnx.ModelProto:
    model = copy(conv_bn())
    model.graph.node.append(helper.make_node("FoldMeHarder", ["z"], ["w"], name="mystery"))
    model.graph.output.append(helper.make_tensor_value_info("w", TensorProto.FLOAT, None))
    return model


def with_unimported_custom_domain() -> onnx.ModelProto:
    model = copy(conv_bn())
    model.graph.node.append(
        helper.make_node("Gadget", ["z"], ["w"], name="gadget", domain="com.example")
    )
    model.graph.output.append(helper.make_tensor_value_info("w", TensorProto.FLOAT, None))
    return model


def with_short_tensor() -> onnx.ModelProto:
    """The weight's raw bytes are 4 short of what its shape needs."""
    model = copy(conv_bn())
    weight = model.graph.initializer[0]
    weight.raw_data = weight.raw_data[:-4]
    return model


def with_unproduced_output() -> onnx.ModelProto:
    model = copy(conv_bn())
    model.graph.output.append(helper.make_tensor_value_info("ghost", TensorProto.FLOAT, [1]))
    return model


def with_if(inner_reads: str) -> onnx.ModelProto:
    """``z = If(cond) then Relu(inner_reads) else Identity(inner_reads)`` after Conv+BN.

    ``inner_reads="z0"`` reads the outer scope (valid); any other name dangles.
    """
    model = copy(conv_bn())
    model.graph.node[1].output[0] = "z0"
    branches = {
        name: helper.make_graph(
            [helper.make_node(op, [inner_reads], [f"{name}_out"], name=f"{name}_{op.lower()}")],
            name,
            [],
            [helper.make_tensor_value_info(f"{name}_out", TensorProto.FLOAT, [1, 4, 8, 8])],
        )
        for name, op in (("then", "Relu"), ("else", "Identity"))
    }
    model.graph.initializer.append(numpy_helper.from_array(np.array(True), "cond"))
    model.graph.node.append(
        helper.make_node(
            "If",
            ["cond"],
            ["z"],
            name="branch",
            then_branch=branches["then"],
            else_branch=branches["else"],
        )
    )
    return model


def without_graph() -> onnx.ModelProto:
    model = onnx.ModelProto()
    model.ir_version = 10
    model.producer_name = "tests"
    return model


def save_with_external_data(model: onnx.ModelProto, path: Path, location: str) -> None:
    """Save ``model`` with every initializer in ``location`` (written relative to ``path``)."""
    onnx.save_model(
        copy(model),
        str(path),
        save_as_external_data=True,
        all_tensors_to_one_file=True,
        location=location,
        size_threshold=0,
    )


def point_external_data_at(path: Path, location: str) -> None:
    """Rewrite every external-data location in the model file ``path`` (data not touched)."""
    model = onnx.load(str(path), load_external_data=False)
    for initializer in model.graph.initializer:
        for entry in initializer.external_data:
            if entry.key == "location":
                entry.value = location
    path.write_bytes(model.SerializeToString())  # onnx.save would try to write the data too


def constant_tensor(name: str, values: np.ndarray) -> onnx.TensorProto:
    return numpy_helper.from_array(values, name)
