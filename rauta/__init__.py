"""rauta: a Kubernetes Gateway API controller with an in-process asyncio L7 proxy.

Importing the package first decides which build of the data plane's hot modules runs,
mypyc-compiled or their Python source (``rauta._compiled``), before any of them loads.
"""

from rauta import _compiled

_compiled.install()
