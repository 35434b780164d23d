"""A short run of the bounded fuzzer inside the test suite (``make fuzz`` runs 100,000 inputs)."""

from __future__ import annotations

from tests.fuzz.fuzzer import Fuzzer, Outcome
from tests.fuzz.mutators import MUTATORS, Fuzzed

INPUTS = 2_000
SEED = 7  # not make fuzz's seed: the suite adds inputs of its own
LIMIT = 5.0  # CPU seconds per input and driver: generous (a 1 MB message takes about 2)


def test_two_thousand_fuzzed_inputs_neither_crash_nor_hang_nor_change_a_decision() -> None:
    fuzzer = Fuzzer(SEED, limit=LIMIT)
    failures: list[str] = []

    def keep(fuzzed: Fuzzed, outcome: Outcome) -> None:
        failures.append(f"{outcome.signature}\n    {fuzzed.describe(200)}\n    {outcome.detail}")

    tally = fuzzer.run(range(INPUTS), on_failure=keep)

    assert tally.inputs == INPUTS
    assert set(tally.by_mutator) == set(MUTATORS)  # every mutator had its turn
    for driver in ("processor", "replay"):
        counts = tally.by_driver[driver]
        assert counts["inputs"] == INPUTS
        assert counts["rejected"] > INPUTS // 2  # most inputs are bad: the oracle is exercised
        assert counts["accepted and changed"] > 0  # and some good ones do change decisions
    summary = {what: tally.count(what) for what in ("crashes", "hangs", "silent changes")}
    assert summary == {"crashes": 0, "hangs": 0, "silent changes": 0}, "\n".join(failures)
