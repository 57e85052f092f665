"""``python -m simpleclip`` is the same as the ``simpleclip`` console script."""

from simpleclip.cli import main

raise SystemExit(main())
