"""The engine's socket server: transport (socket, connections, auth, replies) + one live session.

`EngineServer` (engine_server.py) drives both from one thread; `Transport` (transport.py) owns the
socket; `SessionLoop` (session_loop.py) owns the live session.
"""
from engine.server.config import ServerConfig
from engine.server.engine_server import EngineServer
from engine.server.listen_address import EngineServerError

__all__ = ["EngineServer", "EngineServerError", "ServerConfig"]
