"""Session Limit Guardian: keeps OpenClaw gateways from running out of sessions."""

__version__ = "0.1.0"
