"""Errors of the database layer."""


class DatabaseError(Exception):
    """The database cannot be reached or prepared; the message says what to do."""
