"""``python -m medimg_demo``."""

from .cli import main

raise SystemExit(main())
