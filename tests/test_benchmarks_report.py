"""The README writer regenerates only the sections it owns, each where it was."""

from __future__ import annotations

from benchmarks.report import replace_sections

README = """# Benchmarks

Intro.

## Targets

| old | table |

## Low traffic (written by hand)

Kept.

## Speed (one core)

old speed
"""


def test_owned_sections_are_replaced_in_place_and_the_rest_is_kept() -> None:
    out = replace_sections(
        README,
        [["## Targets", "", "| new | table |"], ["## Speed (one core)", "", "new speed"]],
    )
    assert out == README.replace("| old | table |", "| new | table |").replace(
        "old speed", "new speed"
    )


def test_a_section_not_in_the_readme_is_appended() -> None:
    out = replace_sections(README, [["## Streaming (one worker)", "", "figures"]])
    assert out == README + "\n## Streaming (one worker)\n\nfigures\n"
