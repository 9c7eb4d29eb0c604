"""``python -m generators.preflight --dir DIR``."""
import sys

from .cli import main

sys.exit(main())
