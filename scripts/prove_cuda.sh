#!/usr/bin/env bash
# Prove `bnfold verify` and `bnfold bench` on CUDA, on a machine with an NVIDIA GPU. Run as is:
#     bash scripts/prove_cuda.sh            (uses .venv/bin/python when present, else python3)
# CUDA/cuDNN may come from pip packages (nvidia-*-cu13 wheels): onnxruntime.preload_dlls()
# loads them before the first session. Exit 0 only when CUDA really ran and every check held.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-$([ -x .venv/bin/python ] && echo .venv/bin/python || echo python3)}
OUT=${OUT:-$(mktemp -d)}
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"

"$PY" - <<'PYEOF'
import onnxruntime as ort
if hasattr(ort, "preload_dlls"):
    ort.preload_dlls()  # CUDA/cuDNN from pip wheels, if installed that way
from bnfold.runtime.session import cuda_available
ok, why = cuda_available()
print("onnxruntime", ort.__version__, "providers:", ort.get_available_providers())
print("CUDA really runs:", ok, why or "")
raise SystemExit(0 if ok else 3)
PYEOF

for m in resnet_tiny unet_tiny mlp_bn; do
  "$PY" -m bnfold optimize "models/$m.onnx" -o "$OUT/$m.folded.onnx" -q
  # Exact fold: passes on CUDA (same-provider comparison), drift vs CPU reported; TF32 on and off.
  "$PY" -m bnfold verify "models/$m.onnx" "$OUT/$m.folded.onnx" --providers cpu,cuda \
      --level disable,all --report "$OUT/$m.verify.json"
  "$PY" -m bnfold verify "models/$m.onnx" "$OUT/$m.folded.onnx" --providers cuda \
      --provider-option cuda:use_tf32=0 -q
  # A 1 % one-slice corruption of a folded layer must fail (exit 1) on CUDA, naming its site.
  "$PY" - "$m" "$OUT" <<'PYEOF'
import sys, onnx
sys.path.insert(0, "tests/verify")
from corrupt import batchnorm_outputs, corrupt_layer
from bnfold.verify import verify
name, out = sys.argv[1], sys.argv[2]
original = onnx.load(f"models/{name}.onnx")
site = batchnorm_outputs(original)[0]
wrong = corrupt_layer(onnx.load(f"{out}/{name}.folded.onnx"), site)
report = verify(original, wrong, providers="cuda", levels="all", save_failing=False)
print(report.summary_line())
assert report.exit_code == 1 and report.providers[0].first_divergence == site, "not caught"
print(f"{name}: corruption caught on CUDA at {site}")
PYEOF
done
"$PY" -m bnfold bench models/resnet_tiny.onnx "$OUT/resnet_tiny.folded.onnx" --providers cuda
echo "CUDA proof passed; reports in $OUT"
