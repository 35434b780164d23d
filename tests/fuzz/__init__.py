"""The bounded fuzzer: mutated and generated messages through the worker's processor and replay.

``make fuzz`` runs ``python -m tests.fuzz --inputs 100000 --seed 1``; a short run is part of
the test suite (``test_fuzz_smoke.py``). The modules: :mod:`~tests.fuzz.base` (the valid
stream inputs are inserted into), :mod:`~tests.fuzz.mutators` (the inputs),
:mod:`~tests.fuzz.drivers` (processor and replay behind one interface),
:mod:`~tests.fuzz.fuzzer` (the differential oracle) and :mod:`~tests.fuzz.runner` (workers,
report, reproducers).
"""
