"""``python -m app`` is the ``stepline`` command."""

from app.cli import main

raise SystemExit(main())
