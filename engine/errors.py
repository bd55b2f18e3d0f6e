"""Error types raised by the engine.

``EngineError`` is the root. Subclasses carry a ``reason`` a person can read
("not audio", "truncated", "silent"), which front ends show as is.
"""

from __future__ import annotations


class EngineError(Exception):
    """Root of every error the engine raises on purpose."""


class ParameterError(EngineError, ValueError):
    """A caller passed an argument outside its documented domain (a bug)."""


class DecodeError(EngineError):
    """The input could not be turned into usable audio.

    Parameters
    ----------
    reason : str
        One sentence for the person who supplied the file.
    """

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason
