"""rauta's data plane: an in-process HTTP/1.1 reverse proxy on asyncio Protocols + httptools.

Layout: ``headers`` (pure header and head-bytes functions), ``server`` (client
connections), ``exchange`` (one forwarded request), ``upstream`` (backend connections and
their keep-alive pool), ``mirror`` (RequestMirror copies), ``tls`` (certificates and SNI),
``metrics`` (Prometheus) and ``manager`` (``Proxy``, which applies RouterConfigs).
Routing itself is the pure ``rauta.model.routing.route``.
"""

from rauta.proxy.manager import Proxy

__all__ = ["Proxy"]
