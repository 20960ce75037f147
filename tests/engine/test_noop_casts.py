"""No-op Casts (input already of the type ``to`` names) are removed when bnfold writes."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper

import bnfold

F32 = TensorProto.FLOAT


def _model(nodes, output="y", output_type=F32) -> onnx.ModelProto:
    graph = helper.make_graph(
        nodes,
        "casts",
        [helper.make_tensor_value_info("x", F32, [2, 3])],
        [helper.make_tensor_value_info(output, output_type, [2, 3])],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=10)


def _run(model: onnx.ModelProto, x: np.ndarray) -> np.ndarray:
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(None, {"x": x})[0]


def test_noop_casts_go_and_the_output_keeps_its_name() -> None:
    model = _model(
        [
            helper.make_node("Cast", ["x"], ["a"], to=F32),
            helper.make_node("Relu", ["a"], ["b"]),
            helper.make_node("Cast", ["b"], ["c"], to=TensorProto.DOUBLE),  # a real cast
            helper.make_node("Cast", ["c"], ["d"], to=F32),
            helper.make_node("Neg", ["d"], ["e"], name="neg"),
            helper.make_node("Cast", ["e"], ["y"], to=F32),  # writes the graph output
        ]
    )
    result = bnfold.optimize(model)
    folded = result.model
    assert result.report.counts["noop_casts_removed"] == 2
    assert [n.op_type for n in folded.graph.node] == ["Relu", "Cast", "Cast", "Neg"]
    assert [o.name for o in folded.graph.output] == ["y"]
    assert folded.graph.node[-1].output[0] == "y"
    x = np.array([[-1, 2, -3], [4, -5, 6]], dtype=np.float32)
    np.testing.assert_array_equal(_run(folded, x), _run(model, x))


def test_a_cast_from_a_graph_input_to_a_graph_output_stays() -> None:
    model = _model([helper.make_node("Cast", ["x"], ["y"], to=F32)])
    result = bnfold.optimize(model)
    assert result.report.counts["noop_casts_removed"] == 0
    assert result.model.SerializeToString() == model.SerializeToString()
