"""Feature-flag providers, one module per backend."""

from canarystream.actuators.flags.flagd import FlagdConfig, FlagdProvider, render_flag
from canarystream.actuators.flags.unleash import UnleashConfig, UnleashProvider, render_strategy

__all__ = [
    "FlagdConfig",
    "FlagdProvider",
    "UnleashConfig",
    "UnleashProvider",
    "render_flag",
    "render_strategy",
]
