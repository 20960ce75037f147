"""Everything the tests build or share, in one place; test modules import only from here.

- ``graphs``: ``make_model``/``tensor``/``random_bn_params`` for tiny hand-built graphs, and
  ``fold``/``assert_equivalent``/``run_unoptimized`` to check a fold against the original.
- ``conv_bn``: Conv + BatchNormalization graphs (``conv_bn_model``, ``conv_then``).
- ``nets``: small torch networks; ``torch_nets``: the export-test table of them.
- ``edges``: the issue-10 edge-class cases (``edges.build`` is their small graph DSL).
- ``fuzz``: random graphs (hypothesis and seeded), the safety property, hypothesis profiles.
- ``legacy_runtime``: onnx's reference evaluator for ops onnxruntime has no kernel for.
- ``verify_models``, ``corrupt``: models and corruptions for the verify tests.
- ``bench_models``, ``bench_simulate``: models and synthetic runs for the bench tests.
- ``broken``: a good Conv+BN and ways to break it; ``files``: folder snapshots.
"""
