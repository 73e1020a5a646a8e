"""The gRPC server (``audiototext serve``): protocol adapters over the streaming engine.

Needs the ``grpcio`` family of packages (``pip install audiototext[server]``).
"""

from __future__ import annotations

__all__ = ["GrpcServer", "ServerConfig"]

from audiototext.server.app import GrpcServer, ServerConfig
