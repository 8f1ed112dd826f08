"""rauta's pure model: a snapshot of Kubernetes resources in, RouterConfig and status out.

Rules for everything under this package:
- Pure code only: no asyncio, aiohttp, kubernetes clients, sockets, time, random, threads
  or file I/O (``tests/unit/model/test_purity.py`` fails on any such import or ``open``).
- Inputs are never mutated; every type is frozen.
- Every output order comes from an explicit sort, so equal inputs give equal bytes.
- The clock and the proxy's applied result are parameters, never read from the world.
"""
