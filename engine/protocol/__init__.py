"""The engine's wire protocol: message types, codec, addresses/tokens and a client.

The only part of the engine the studio may import.
"""
from engine.protocol.address import default_address, read_token, token_path
from engine.protocol.client import EngineClient, EngineError
from engine.protocol.codec import ProtocolError, decode, encode
from engine.protocol.messages import *  # noqa: F401,F403  (the message types are the API)
from engine.protocol.messages import PROTOCOL_VERSION, SessionSettings

__all__ = ["EngineClient", "EngineError", "ProtocolError", "decode", "encode", "default_address",
           "read_token", "token_path", "PROTOCOL_VERSION", "SessionSettings"]
