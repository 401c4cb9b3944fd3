"""Exceptions that reach the user as one readable line."""

from __future__ import annotations


class PhotdbError(Exception):
    """An error the command line shows as one line, followed by a non-zero exit.

    The message must name what failed (a file, a server, a role) and why; it
    must never contain a password.
    """


class ConfigError(PhotdbError):
    """Settings are missing or inconsistent."""


class DatabaseError(PhotdbError):
    """The database could not be reached or refused an operation."""
