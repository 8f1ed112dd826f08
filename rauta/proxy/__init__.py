"""rauta's data plane: an in-process reverse proxy on asyncio Protocols (HTTP/1.x with
httptools; HTTP/2 on HTTPS with the h2 library; HTTP/1.1 upstream).

Layout: ``headers`` (pure header and head-bytes functions), ``request`` (the parsed
request and the checks and routing both protocols share), ``server`` (listeners and
HTTP/1 client connections), ``h2`` (HTTP/2 client connections), ``exchange`` (one
forwarded request), ``upstream`` (backend connections and their keep-alive pool),
``mirror`` (RequestMirror copies), ``tls`` (certificates, SNI, ALPN), ``metrics``
(Prometheus) and ``manager`` (``Proxy``, which applies RouterConfigs).
Routing itself is the pure ``rauta.model.routing.route``.
"""

from rauta.proxy.manager import Proxy

__all__ = ["Proxy"]
