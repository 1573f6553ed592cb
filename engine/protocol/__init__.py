"""The engine's wire protocol and what both processes must spell the same way: message types,
codec, addresses/tokens, a client, stage names, engine states, backend names and option defaults.

The only part of the engine the studio may import.
"""
from engine.protocol.address import default_address, read_token, token_path
from engine.protocol.backend_names import DEFAULT_BACKEND, BackendName
from engine.protocol.client import EngineClient, EngineError
from engine.protocol.codec import ProtocolError, decode, encode
from engine.protocol.engine_state import EngineState
from engine.protocol.frame_decoding import decode_frames
from engine.protocol.messages import *  # noqa: F401,F403  (the message types are the API)
from engine.protocol.messages import PROTOCOL_VERSION, SessionSettings
from engine.protocol.stages import Stage, StageGroup, stage_group

__all__ = ["EngineClient", "EngineError", "ProtocolError", "decode", "encode", "default_address",
           "read_token", "token_path", "PROTOCOL_VERSION", "SessionSettings", "BackendName",
           "DEFAULT_BACKEND", "EngineState", "decode_frames", "Stage", "StageGroup", "stage_group"]
