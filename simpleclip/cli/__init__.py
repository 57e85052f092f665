"""The ``simpleclip`` command line (also ``python -m simpleclip``): ``main`` parses and runs.

``main`` holds the parser and the small commands; commands with more to say have a module of
their own (``search``). Each is a thin wrapper over a package function, so everything it does
can also be done from Python or a notebook.
"""

from simpleclip.cli.main import build_parser, main

__all__ = ["build_parser", "main"]
