#!/usr/bin/env bash
# Benchmark bnfold against other BN-folding tools and write docs/benchmarks.md.
#
#   bash benchmarks/run.sh [--quick] [--models A,B] [--tools X,Y] [--keep-outputs] ...
#
# Makes (once) the benchmark venv benchmarks/work/venv with bnfold (editable, this checkout)
# and the other tools, generates the models into benchmarks/work/models (reused when present),
# then runs benchmarks/run.py with the same arguments (`--help` lists them).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(dirname "$here")"
venv="$here/work/venv"
stamp="$venv/.installed"
python="${PYTHON:-python3}"

if [[ ! -x "$venv/bin/python" ]]; then
    mkdir -p "$here/work"
    "$python" -m venv "$venv"
fi
want="$(cat "$here/requirements.txt" "$repo/pyproject.toml" | sha256sum | cut -c1-16)"
if [[ ! -f "$stamp" || "$(cat "$stamp")" != "$want" ]]; then
    echo "installing the benchmark venv in $venv" >&2
    "$venv/bin/python" -m pip install -q --upgrade pip
    "$venv/bin/python" -m pip install -q -e "$repo" -r "$here/requirements.txt"
    # onnxsim is optional: it may need to compile. One try; the run records it as not installed.
    "$venv/bin/python" -m pip install -q onnxsim || echo "onnxsim did not install; skipped" >&2
    echo "$want" > "$stamp"
fi
cd "$repo"
exec "$venv/bin/python" "$here/run.py" --command "bash benchmarks/run.sh $*" "$@"
