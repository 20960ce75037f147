"""Model files in and out: lazy loading, recipes, the streaming crash-safe writer, staging.

``load`` reads a model (tensors of 1 MiB or more stay in their file, ``lazyio``/``protowire``)
and checks it (``modelcheck``); ``recipes`` encode a scaled weight that is still in its file;
``outputs`` is the one writer of every file a command writes (``staging``, ``streamwrite``).
``dtypes`` and ``naming`` are the small rules every layer shares.

Storage imports nothing of bnfold but ``errors``: the engine, the runtime and the judges all
stand on it.
"""
