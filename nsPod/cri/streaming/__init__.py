"""CRI streaming: the server behind the URLs Exec, Attach and PortForward return (server.py),
speaking Kubernetes' streaming protocols over WebSocket and SPDY/3.1."""
from nsPod.cri.streaming.server import StreamingBusy, StreamingServer

__all__ = ["StreamingServer", "StreamingBusy"]
