"""Random graphs for the fuzz tests and ``run_edge_corpus.py``, the property every graph must
satisfy (``checks.check_optimize_is_safe``) and the hypothesis profiles (``settings``)."""
