"""``python -m bnfold`` == ``bnfold``."""

from .cli import main

main()
