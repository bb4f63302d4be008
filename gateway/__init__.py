"""OCPP-J WebSocket gateway that bridges charge points to MQTT."""

__version__ = "0.1.0"
