"""Errors of the worker layer.

``MixwithError`` is the root for problems a user caused or can fix; its
message is one sentence shown as is. Anything else escaping a job is a bug:
logged with its traceback, reported to the user as an internal error.
"""

from __future__ import annotations


class MixwithError(Exception):
    """A problem with the user's input or environment, explained in one sentence."""


class InputError(MixwithError):
    """The link, file or clip cannot be used (bad audio, unsupported link)."""


class FetchError(MixwithError):
    """A source could not be fetched (service down, not found, too large)."""


class BlockedURLError(FetchError):
    """The link points somewhere we refuse to go (private address, bad scheme)."""


class NotFoundError(MixwithError):
    """Something the user named is not in the catalog."""


class TransientError(MixwithError):
    """A temporary failure worth retrying (timeouts, 5xx, connection resets)."""
