"""``bnfold.export_torch`` on warmed torch nets: the written file matches the module, no
foldable BatchNormalization is left, the training flags come back, and a file that does not
match the module is never written.

Every check of the written file here is independent of ``export_torch``'s own verification:
the file is run again under onnxruntime with every optimization off and compared with the
module in float64 (the exact function) on inputs ``export_torch`` never saw.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import onnx
import pytest

torch = pytest.importorskip("torch")
from torch import nn  # noqa: E402

import bnfold  # noqa: E402
from bnfold.errors import UsageError, VerificationFailed  # noqa: E402
from bnfold.integrations import torch_export  # noqa: E402
from bnfold.verify.compare import OutputComparison  # noqa: E402
from tests.builders import graphs as helpers  # noqa: E402
from tests.builders import nets  # noqa: E402
from tests.builders.torch_nets import NETS, warm  # noqa: E402

EXPORTERS = [
    pytest.param(
        "dynamo",
        marks=pytest.mark.skipif(
            nets.exporter_unavailable("dynamo") is not None,
            reason=str(nets.exporter_unavailable("dynamo")),
        ),
    ),
    "torchscript",
]
# Kept BNs of the pre-activation ResNet: after the stem Conv (whose output is also the skip)
# and after residual Adds (no layer computes them); a padded Conv sits behind the ReLU. Which
# of the two reasons the engine names first for the Add outputs is its choice.
PREACT_KEPT = {"layers.0.bn1", "layers.1.bn1", "layers.2.bn1", "bn"}
PREACT_REASONS = {"producer-output-shared", "no-linear-producer"}


def _modes(module: nn.Module) -> dict[str, bool]:
    return {name: sub.training for name, sub in module.named_modules()}


def _independent_error(path: Path, module: nn.Module, shape: tuple[int, ...]) -> float:
    """Largest |file - module(float64)| relative to the output scale, on fresh inputs."""
    model = onnx.load(str(path))
    reference = module.eval().double()
    worst = 0.0
    for seed in (11, 12):
        x = np.random.default_rng(seed).standard_normal(shape).astype(np.float32)
        got = next(iter(helpers.run_unoptimized(model, {model.graph.input[0].name: x}).values()))
        with torch.no_grad():
            expected = reference(torch.from_numpy(x).double()).numpy()
        scale = float(np.max(np.abs(expected)))
        worst = max(worst, float(np.max(np.abs(got - expected))) / max(scale, 1e-6))
    return worst


@pytest.mark.parametrize("exporter", EXPORTERS)
@pytest.mark.parametrize("case", NETS, ids=[case.name for case in NETS])
@pytest.mark.slow
def test_export_matches_module_and_leaves_nothing_foldable(case, exporter, tmp_path):
    net = case.warmed()
    if case.name == "preact_resnet":
        net.layers[1].eval()  # a module in mixed modes: each flag must come back as it was
    modes = _modes(net)
    bn_modules = [m for m in net.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    assert any(float(m.running_var.min()) < 0.9 for m in bn_modules), "stats not warmed"
    path = tmp_path / f"{case.name}.onnx"

    result = bnfold.export_torch(net, (case.example(),), path, dynamo=exporter == "dynamo")

    assert _modes(net) == modes  # every submodule's flag restored
    assert result.path == path and path.is_file()
    assert result.verification.passed and result.verification.float64_opinion
    assert result.verification.runs == 3
    for check in result.verification.outputs.values():
        assert check.max_abs_error is not None and check.max_abs_error < 1e-4
    assert not bnfold.check(str(path)).folds  # no foldable BN left in the written file
    kept = {s.bn: s.reason for s in result.report.skipped}
    assert set(kept) == (PREACT_KEPT if case.name == "preact_resnet" else set())
    assert set(kept.values()) <= PREACT_REASONS
    assert result.batchnorm_exported == len(bn_modules)
    assert len(result.report.folds) == len(bn_modules) - len(kept)
    assert helpers.batchnorm_count(result.model) == len(kept)
    # Folds name the torch modules they came from.
    names = dict(net.named_modules())
    for fold in result.report.folds:
        assert isinstance(names.get(fold.bn), nn.modules.batchnorm._BatchNorm), fold.bn
        assert isinstance(names.get(fold.into), (nn.Conv1d, nn.Conv2d, nn.ConvTranspose2d)), fold
    assert _independent_error(path, net, case.shape) < 1e-5


@pytest.mark.parametrize("exporter", EXPORTERS)
def test_a_file_that_does_not_match_the_module_is_never_written(exporter, tmp_path):
    class CountsCalls(nn.Module):
        """The traced graph bakes in the first call's count; later calls differ from it."""

        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(3, 4, 3)
            self.bn = nn.BatchNorm2d(4)
            self.calls = 0

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            self.calls += 1
            return self.bn(self.conv(x)) * float(self.calls)

    net = CountsCalls().train()
    path = tmp_path / "model.onnx"
    path.write_bytes(b"previous")
    with pytest.raises(VerificationFailed) as caught:
        bnfold.export_torch(net, (torch.randn(1, 3, 8, 8),), path, dynamo=exporter == "dynamo")
    assert "nothing was written" in str(caught.value)
    assert not caught.value.verification.passed  # type: ignore[attr-defined]
    assert path.read_bytes() == b"previous"
    assert sorted(os.listdir(tmp_path)) == ["model.onnx"]  # no staging folder left
    assert net.training and net.conv.training


def test_a_corrupted_fold_is_caught(tmp_path, monkeypatch):
    """A fold whose weights are off by 1% in one channel must fail verification."""
    real_optimize = torch_export.optimize

    def corrupting(model, **kwargs):
        result = real_optimize(model, **kwargs)
        folded = result.model
        conv = next(n for n in folded.graph.node if n.op_type == "Conv")
        weight = next(t for t in folded.graph.initializer if t.name == conv.input[1])
        array = onnx.numpy_helper.to_array(weight).copy()
        array[0] *= 1.01
        weight.CopyFrom(onnx.numpy_helper.from_array(array, weight.name))
        return bnfold.optimize(folded, **kwargs)

    monkeypatch.setattr(torch_export, "optimize", corrupting)
    net = nets.NETS[0].net()  # ResNetTiny with random BN statistics
    with pytest.raises(VerificationFailed):
        bnfold.export_torch(net, (torch.randn(2, 3, 32, 32),), tmp_path / "m.onnx", dynamo=False)
    assert not (tmp_path / "m.onnx").exists()


def test_second_opinion_accepts_only_what_the_float64_module_accepts():
    def comparison(passed: bool, error: float) -> OutputComparison:
        return OutputComparison(
            name="y",
            dtype="float32",
            shape=[2],
            passed=passed,
            reason=None if passed else "too far",
            atol=1e-4,
            rtol=1e-4,
            max_abs_error=error,
            max_rel_error=error,
            p99_abs_error=error,
            cosine_similarity=1.0,
            mismatched=0 if passed else 1,
            total=2,
        )

    both_fail = torch_export._output_check(comparison(False, 1e-2), comparison(False, 1e-2), 0.0)
    rescued = torch_export._output_check(comparison(False, 2e-4), comparison(True, 5e-5), 2e-4)
    no_opinion = torch_export._output_check(comparison(False, 2e-4), None, None)
    plain = torch_export._output_check(comparison(True, 1e-6), comparison(True, 1e-6), 1e-7)
    assert not both_fail.passed and both_fail.reason == "too far"
    assert rescued.passed and rescued.judge == "module-float64"
    assert not no_opinion.passed
    assert plain.passed and plain.judge == "module"


class TwoInputs(nn.Module):
    """Token ids and features in; a dict of two outputs out (pytree flattening both ways)."""

    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Embedding(20, 8)
        self.lin = nn.Linear(8, 8)
        self.bn = nn.BatchNorm1d(8)

    def forward(self, ids: torch.Tensor, feats: torch.Tensor) -> dict[str, torch.Tensor]:
        y = self.bn(self.lin(self.embed(ids).mean(1) + feats))
        return {"y": y, "z": torch.relu(y).sum(1)}


@pytest.mark.parametrize("exporter", EXPORTERS)
def test_several_inputs_and_outputs_integer_inputs_in_range(exporter, tmp_path):
    net = warm_mlp(TwoInputs())
    ids = torch.randint(0, 20, (4, 5))
    result = bnfold.export_torch(
        net, (ids, torch.randn(4, 8)), tmp_path / "m.onnx", dynamo=exporter == "dynamo"
    )
    assert result.verification.passed and len(result.verification.outputs) == 2
    assert [f.bn for f in result.report.folds] == ["bn"]
    assert [f.into for f in result.report.folds] == ["lin"]


@pytest.mark.parametrize("exporter", EXPORTERS)
def test_keyword_tensor_arguments_are_inputs_too(exporter, tmp_path):
    class WithBias(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(3, 4, 3)
            self.bn = nn.BatchNorm2d(4)

        def forward(self, x: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
            return self.bn(self.conv(x)) + bias

    result = bnfold.export_torch(
        nets.randomize_batchnorm(WithBias()),
        (torch.randn(1, 3, 8, 8),),
        tmp_path / "m.onnx",
        dynamo=exporter == "dynamo",
        kwargs={"bias": torch.randn(1, 4, 1, 1)},
    )
    assert len(result.model.graph.input) == 2 and result.verification.passed
    assert [f.bn for f in result.report.folds] == ["bn"]


def warm_mlp(net: TwoInputs) -> TwoInputs:
    net.train()
    with torch.no_grad():
        for _ in range(3):
            net(torch.randint(0, 20, (16, 5)), 3 * torch.randn(16, 8) + 1)
    return net


def test_float64_opinion_is_optional(tmp_path):
    class Float32Only(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(3, 4, 3)
            self.bn = nn.BatchNorm2d(4)
            self.mix = torch.randn(4, 4)  # a plain attribute: .double() leaves it float32

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            # In float64, matmul of a float64 tensor with this float32 one raises.
            return torch.matmul(self.bn(self.conv(x)).transpose(1, 3), self.mix)

    net = Float32Only().eval()
    result = bnfold.export_torch(net, (torch.randn(1, 3, 8, 8),), tmp_path / "m.onnx", dynamo=False)
    assert result.verification.passed and len(result.report.folds) == 1
    assert not result.verification.float64_opinion
    assert any("float64 second opinion not run" in note for note in result.notes)


def test_exporter_options_and_notes(tmp_path):
    net = nets.NETS[0].net()
    x = torch.randn(2, 3, 32, 32)
    folded_by_torch = bnfold.export_torch(
        net, (x,), tmp_path / "a.onnx", dynamo=False, do_constant_folding=True
    )
    assert folded_by_torch.batchnorm_exported == 0 and not folded_by_torch.report.folds
    assert any("do_constant_folding=True" in note for note in folded_by_torch.notes)
    with pytest.raises(UsageError, match="'f'"):
        bnfold.export_torch(net, (x,), tmp_path / "b.onnx", f="x.onnx")
    with pytest.raises(UsageError, match="runs"):
        bnfold.export_torch(net, (x,), tmp_path / "b.onnx", runs=0)
    assert not (tmp_path / "b.onnx").exists()


@pytest.mark.parametrize("exporter", EXPORTERS)
def test_external_data_and_levels(exporter, tmp_path):
    net = nets.NETS[0].net()
    path = tmp_path / "m.onnx"
    result = bnfold.export_torch(
        net,
        (torch.randn(2, 3, 32, 32),),
        path,
        dynamo=exporter == "dynamo",
        external_data=True,
        levels="disable",
        runs=1,
    )
    assert (tmp_path / "m.onnx.data").is_file()
    assert result.verification.levels == ["disable"] and result.verification.runs == 1


@pytest.mark.skipif(nets.exporter_unavailable("dynamo") is not None, reason="needs onnxscript")
@pytest.mark.slow
def test_dynamo_optimize_false_keeps_the_raw_graph(tmp_path):
    net = nets.NETS[0].net()
    x = torch.randn(2, 3, 32, 32)
    raw = bnfold.export_torch(net, (x,), tmp_path / "raw.onnx", optimize=False)
    tidy = bnfold.export_torch(net, (x,), tmp_path / "tidy.onnx")
    assert len(raw.report.folds) == len(tidy.report.folds) == 6
    assert raw.report.counts["nodes_after"] > tidy.report.counts["nodes_after"]
    assert raw.exporter_folded == tidy.exporter_folded == 0


@pytest.mark.skipif(nets.exporter_unavailable("dynamo") is not None, reason="needs onnxscript")
@pytest.mark.slow
def test_what_the_exporter_folds_after_bnfold_is_reported_as_such(tmp_path):
    """With conv-bn disabled bnfold folds nothing; torch's optimizer then folds all 6."""
    net = nets.NETS[0].net()
    result = bnfold.export_torch(
        net, (torch.randn(2, 3, 32, 32),), tmp_path / "m.onnx", disable=["conv-bn"]
    )
    assert not result.report.folds and result.batchnorm_exported == 6
    assert result.exporter_folded == 6 and helpers.batchnorm_count(result.model) == 0
    assert any("optimizer removed 6 BatchNormalization" in note for note in result.notes)
    assert result.verification.passed


def test_missing_packages_are_usage_errors(tmp_path, monkeypatch):
    net = nets.NETS[0].net()
    real_find_spec = torch_export.importlib.util.find_spec
    monkeypatch.setattr(
        torch_export.importlib.util,
        "find_spec",
        lambda name, *a: None if name == "onnxscript" else real_find_spec(name, *a),
    )
    with pytest.raises(UsageError, match="onnxscript") as caught:
        bnfold.export_torch(net, (torch.randn(1, 3, 8, 8),), tmp_path / "m.onnx")
    assert "bnfold[torch]" in str(caught.value)
    monkeypatch.setitem(__import__("sys").modules, "torch", None)
    with pytest.raises(UsageError, match="needs torch"):
        bnfold.export_torch(net, (torch.randn(1, 3, 8, 8),), tmp_path / "m.onnx")


def test_warm_moves_statistics_away_from_defaults():
    net = warm(nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4)), (4, 3, 8, 8))
    bn = net[1]
    assert net.training
    assert float(bn.running_mean.abs().max()) > 0.1
    assert float((bn.running_var - 1).abs().max()) > 0.1


@pytest.mark.slow
def test_import_bnfold_does_not_import_torch():
    code = (
        "import sys, bnfold; bnfold.export_torch; bnfold.fold_graph; "
        "assert 'torch' not in sys.modules, 'torch imported'"
    )
    __import__("subprocess").run([__import__("sys").executable, "-c", code], check=True)
