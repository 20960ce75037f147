"""Thin shim so ``python cli.py optimize model.onnx`` from a checkout equals ``bnfold optimize``.

Run by a Python without bnfold's dependencies (no venv active), it prints one line with the fix
and exits 8 (environment problem) instead of a traceback; Ctrl-C while starting is exit 130.
"""

import sys

if __name__ == "__main__":
    try:
        from bnfold.cli import main
    except KeyboardInterrupt:
        print("error: interrupted while starting; nothing was done", file=sys.stderr)
        sys.exit(130)
    except ImportError as exc:
        print(
            f"error: bnfold's dependency `{exc.name or exc}` cannot be imported by"
            f" {sys.executable} (run `make demo` and use .venv/bin/python cli.py,"
            " or `pip install -e .` into this Python)",
            file=sys.stderr,
        )
        sys.exit(8)  # bnfold.errors.EnvironmentProblem.exit_code
    main()
