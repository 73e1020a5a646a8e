"""The gRPC server (``audiototext serve``): protocol adapters over the streaming engine.

Needs the ``grpcio`` family of packages (``pip install audiototext[server]``).

``GrpcServer`` and ``ServerConfig`` are loaded on first use (PEP 562): importing a submodule,
such as the session layer, must not load the whole application and its engine.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__all__ = ["GrpcServer", "ServerConfig"]

if TYPE_CHECKING:
    from audiototext.server.app import GrpcServer, ServerConfig


def __getattr__(name: str) -> Any:
    if name in __all__:
        from audiototext.server import app

        return getattr(app, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
