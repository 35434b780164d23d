"""``python -m tests.fuzz``: see :mod:`tests.fuzz.runner`."""

from __future__ import annotations

import os

if __name__ == "__main__":
    # One thread per worker process: the machine's cores go to the workers themselves.
    for name in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(name, "1")

    from tests.fuzz.runner import main

    raise SystemExit(main())
