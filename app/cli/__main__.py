"""``python -m app.cli`` is the ``stepline`` command."""

from app.cli import main

raise SystemExit(main())
