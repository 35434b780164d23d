"""``python -m canarystream.demo``."""

from __future__ import annotations

import sys

from canarystream.demo import main

if __name__ == "__main__":
    sys.exit(main())
