"""bnfold from other tools: ``export_torch`` (torch.onnx, fold, verify against the module) and
``fold_graph`` (an onnx-graphsurgeon ``Graph``, folded in place). Each imports its tool only
when called; they stand on the library's front door (``bnfold.api``) and the judges."""
