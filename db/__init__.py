"""The only place SQL lives: the connection pool, migrations and queries."""

from db.errors import DatabaseError

__all__ = ["DatabaseError"]
