"""Headers the router adds to what it forwards; their names are used by drills and tests too."""

from __future__ import annotations

__all__ = ["CLOUD_HEADER", "CLOUD_HEADER_BYTES", "HOP_HEADER", "HOP_HEADER_BYTES", "ROUTER_HEADER",
           "ROUTER_HEADER_BYTES"]

# Which cloud answered: set by the router (and by the HAProxy/Envoy configs it exports) on
# every forwarded answer; an upstream's own value is dropped. Lower case, as HTTP/2 wants it.
CLOUD_HEADER = "x-mco-cloud"
CLOUD_HEADER_BYTES = CLOUD_HEADER.encode()

# Which router answered (``router.name``, by default the host or pod name): with a router in
# every cloud behind one global entry, this tells the entry point apart from the model's cloud.
ROUTER_HEADER = "x-mco-router"
ROUTER_HEADER_BYTES = ROUTER_HEADER.encode()

# The hop rule. Every router adds its name to ``x-mco-hop`` on each request it forwards, so a
# router in another cloud knows the request already came through an mco router (which has
# already chosen that cloud). Such a request is served by the receiving router's own cloud
# only (``router.cloud``) and never spilled again: routers calling routers cannot ping-pong.
# A request whose ``x-mco-hop`` already names the receiving router is a loop: 508.
HOP_HEADER = "x-mco-hop"
HOP_HEADER_BYTES = HOP_HEADER.encode()
