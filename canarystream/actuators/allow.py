"""Allow-lists of the hook runner: whole argv patterns for commands, parsed URLs for webhooks.

Hooks come from rollout announcements, so what they may run is matched strictly:

* An **argv pattern** is a whole command line: its first element an absolute program path
  (no glob), each further element an exact string or a glob (``fnmatch``) standing for exactly
  one argument (an argument equal to the element matches it, glob characters or not). A
  command matches when it has as many arguments as the pattern and each matches its element;
  a trailing ``...`` -- only when written -- matches any further arguments. Allowing
  ``/usr/bin/env`` thus allows ``["/usr/bin/env"]`` alone, never
  ``["/usr/bin/env", "sh", "-c", "id > f"]``.
* An **allowed URL** is compared parsed, never as a string prefix: the scheme, the host (exact,
  case-insensitive, IDNA-encoded), the port (explicit or the scheme's default) and the path by
  whole segments (``/api`` allows ``/api`` and ``/api/v1``, not ``/apiary``). A webhook URL
  with user information, a backslash, or a dot segment (``..``, ``%2e%2e``) in its path is
  refused whatever the list.

>>> pattern = parse_argv_pattern("/usr/bin/python3 -m mytool.down *")
>>> argv_matches(["/usr/bin/python3", "-m", "mytool.down", "shop"], pattern)
True
>>> argv_matches(["/usr/bin/python3", "-m", "mytool.down", "shop", "--all"], pattern)
False
>>> allowed = parse_allowed_url("https://hooks.corp/api")
>>> url_refusal("https://hooks.corp/api/v1/undo", [allowed]) is None
True
>>> url_refusal("https://hooks.corp/apiary", [allowed])
"webhook 'https://hooks.corp/apiary' is not under an allowed URL"
"""

from __future__ import annotations

import fnmatch
import shlex
import urllib.parse
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

__all__ = [
    "ANY_MORE",
    "AllowedUrl",
    "argv_matches",
    "parse_allowed_url",
    "parse_argv_pattern",
    "url_refusal",
]

#: The last element of an argv pattern that matches any further arguments.
ANY_MORE = "..."
_DEFAULT_PORTS = {"http": 80, "https": 443}
_GLOB = frozenset("*?[")


def parse_argv_pattern(value: str | Sequence[str]) -> tuple[str, ...]:
    """An argv pattern from a list, or a string split as a shell would; ValueError if wrong."""
    pattern = tuple(shlex.split(value)) if isinstance(value, str) else tuple(value)
    if not pattern:
        raise ValueError("an empty argv pattern")
    program = pattern[0]
    if not program.startswith("/") or _GLOB & set(program):
        raise ValueError(
            f"{program!r}: the program of an argv pattern is an absolute path without globs"
        )
    if ANY_MORE in pattern[:-1]:
        raise ValueError(f"{shlex.join(pattern)!r}: {ANY_MORE!r} may only end a pattern")
    return pattern


def argv_matches(argv: Sequence[str], pattern: Sequence[str]) -> bool:
    """Whether ``argv`` matches ``pattern`` (see the module's description)."""
    open_ended = bool(pattern) and pattern[-1] == ANY_MORE
    fixed = pattern[:-1] if open_ended else pattern
    if not fixed or len(argv) < len(fixed) or (not open_ended and len(argv) != len(fixed)):
        return False
    if argv[0] != fixed[0]:
        return False
    pairs = zip(argv[1 : len(fixed)], fixed[1:], strict=True)
    return all(arg == glob or fnmatch.fnmatchcase(arg, glob) for arg, glob in pairs)


@dataclass(frozen=True, slots=True)
class AllowedUrl:
    """A parsed allowed URL: scheme, IDNA host, port, and path segments."""

    text: str
    scheme: str
    host: str
    port: int
    segments: tuple[str, ...]

    def allows(self, other: AllowedUrl) -> bool:
        """Whether a parsed webhook URL is under this one."""
        return (other.scheme, other.host, other.port) == (
            self.scheme,
            self.host,
            self.port,
        ) and other.segments[: len(self.segments)] == self.segments


def parse_allowed_url(text: str) -> AllowedUrl:
    """An allowed URL from its text; ValueError naming what is wrong."""
    parsed = _parse(text)
    split = urllib.parse.urlsplit(text)
    if split.query or split.fragment:
        raise ValueError(f"{text!r}: an allowed URL has no query or fragment")
    return parsed


def url_refusal(url: str, allowed: Iterable[AllowedUrl]) -> str | None:
    """Why the webhook ``url`` may not be called, or None when an allowed URL covers it."""
    try:
        parsed = _parse(url)
    except ValueError as exc:
        return f"webhook {url!r} is refused: {exc}"
    if any(entry.allows(parsed) for entry in allowed):
        return None
    return f"webhook {url!r} is not under an allowed URL"


def _parse(text: str) -> AllowedUrl:
    if "\\" in text or any(ord(c) < 0x21 for c in text):
        raise ValueError("a backslash, a space or a control character in the URL")
    split = urllib.parse.urlsplit(text)
    scheme = split.scheme.lower()
    if scheme not in _DEFAULT_PORTS:
        raise ValueError(f"{text!r} is not an http(s) URL")
    if "@" in split.netloc:
        raise ValueError("user information in the URL")
    try:
        host = (split.hostname or "").encode("idna").decode("ascii").lower()
        port = split.port or _DEFAULT_PORTS[scheme]
    except (UnicodeError, ValueError) as exc:
        raise ValueError(f"not a valid host and port: {exc}") from None
    if not host:
        raise ValueError(f"{text!r} has no host")
    segments = tuple(s for s in split.path.split("/") if s)
    for segment in segments:
        plain = urllib.parse.unquote(segment)
        if plain in (".", "..") or "/" in plain or "\\" in plain:
            raise ValueError(f"the path segment {segment!r} is not allowed")
    return AllowedUrl(text, scheme, host, port, segments)
