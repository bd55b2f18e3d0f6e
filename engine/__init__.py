"""mixwith's music brain: pure, synchronous functions from audio to numbers.

Nothing here touches the network or a database, and importing this package
does not import torch (the embedding model lives in ``engine.embed``).
"""

from engine.errors import DecodeError, EngineError, ParameterError

__all__ = ["DecodeError", "EngineError", "ParameterError"]
