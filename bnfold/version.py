"""The version, in one place: every layer reads it from here (``bnfold.__version__`` too)."""

__version__ = "0.2.0"
