"""``python -m mentor``: the command line (what ``torchrun -m mentor train ...`` starts)."""

from mentor.cli import main

raise SystemExit(main())
