"""The HTTP adapter: FastAPI on uvicorn, in the gRPC server's process and event loop.

:mod:`.app` builds the application from the server's shared parts; one module per concern:
:mod:`.errors` (JSON error bodies, status mapping), :mod:`.guard` (token and Origin checks),
:mod:`.rest` (health, models, system), :mod:`.websocket` (live streams over the neutral
stream layer), :mod:`.web` (the page's static files) and :mod:`.listener` (uvicorn on the
running loop). The contract the page codes against is in ``docs/architecture.md``.

Nothing is imported here, so loading one module does not load FastAPI's whole app.
"""
