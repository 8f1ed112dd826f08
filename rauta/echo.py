"""Echo backends for scenarios and demos (aiohttp): answer with who they are and what came.

Role: the stand-in for real Services in ``rauta replay`` and the quickstart. Each answer
carries ``x-backend: NAME`` and a JSON body with the backend name, method, path and
headers, and echoes every request header back as ``x-echo-<name>`` so that header filters
can be checked from the client side.

Rules:
- Bound to loopback addresses only; ``status``/``delay_ms`` make a backend fail or lag.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from aiohttp import web


@dataclass
class EchoBackend:
    name: str
    host: str
    port: int
    status: int = 200
    delay_ms: int = 0
    runner: web.AppRunner | None = None

    async def _handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        if self.delay_ms:
            await asyncio.sleep(self.delay_ms / 1000)
        headers = {"x-backend": self.name}
        for name, value in request.headers.items():
            key = f"x-echo-{name.lower()}"
            headers[key] = f"{headers[key]},{value}" if key in headers else value
        return web.json_response(
            {"backend": self.name, "method": request.method, "path": request.path_qs,
             "headers": dict(request.headers), "body_bytes": len(body)},
            status=self.status, headers=headers)

    async def start(self) -> None:
        app = web.Application(client_max_size=1 << 30)
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self.runner = web.AppRunner(app, access_log=None)
        await self.runner.setup()
        await web.TCPSite(self.runner, self.host, self.port, reuse_address=True).start()

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()
            self.runner = None

    @property
    def running(self) -> bool:
        return self.runner is not None
