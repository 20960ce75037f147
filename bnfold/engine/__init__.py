"""The fold engine: index a graph, find its affine sites, ask the patterns for plans, apply them.

``driver`` runs the given patterns to a fixed point over every graph and scope; a plan
(``plan``) is data and only ``editor`` writes; ``selfcheck`` proves the result as valid as the
input; ``lowering`` rewrites the BNs that stay. Under them: the scoped graph index (``graph``,
``shapes``, ``constants``), the sites (``sites``, ``batchnorm``, ``elementwise``), the pattern
protocol (``protocol``), the pure numpy fold math (``foldmath``) and the ``report``.

The engine reads models through ``bnfold.storage`` and never imports the patterns (they are
given to it), onnxruntime, the judges, the commands or the integrations.
"""
