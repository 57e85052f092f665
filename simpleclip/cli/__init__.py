"""The ``simpleclip`` command line (also ``python -m simpleclip``): ``main`` parses and runs.

One module per command (``make_synthetic``, ``download``, ``shards``, ``demo``, ``train``,
``eval``, ``search``, ``push``, ``export``, ``app``, ``validate_clip``), each with
``add_parser`` and ``run``; options several commands share are defined once in ``options``.
Each command is a thin wrapper over a package function, so everything it does can also be done
from Python or a notebook.
"""

from simpleclip.cli.main import build_parser, main

__all__ = ["build_parser", "main"]
