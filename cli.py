"""Thin shim so ``python cli.py optimize model.onnx`` from a checkout equals ``bnfold optimize``."""

from bnfold.cli import main

if __name__ == "__main__":
    main()
