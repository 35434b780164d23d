"""Settings as the commands see them: their options over the environment, the file, defaults.

An option that mirrors a setting defaults to ``None`` (not given); a given one overrides
every other source, so the order is option > ``CANARYSTREAM_*`` > ``CANARYSTREAM_CONFIG``
file > default, and a wrong value is reported like any setting's, naming the field.
"""

from __future__ import annotations

from typing import Any

from canarystream.settings import Settings, load_settings

__all__ = ["settings_with"]


def settings_with(**options: Any) -> Settings:
    """:func:`~canarystream.settings.load_settings` with the options given (not ``None``).

    >>> settings_with(web_port=None).web_port == load_settings().web_port
    True
    >>> settings_with(web_port=7000).web_port
    7000
    """
    return load_settings(**{name: value for name, value in options.items() if value is not None})
