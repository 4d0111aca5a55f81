"""``clonekit serve``: the browser page over a dataset, run or experiment directory (extra ``ui``), and with
``--live`` a page to watch a policy play and take over from it (:mod:`clonekit.interactive.live`), also serving
as the intervener of ``clonekit interactive ... --intervener human`` (:mod:`clonekit.interactive.human`).

A FastAPI app with a small static page (``static/``, no build step) and a JSON API over
:class:`clonekit.interactive.browse.Browse`. It binds ``127.0.0.1`` by default; any other address requires
a token (refused without one), which every API request then carries (``?token=`` or ``Authorization:
Bearer``; the page takes it from its own URL; the page and its scripts themselves hold no data). The page
inserts every text it shows as text, never as HTML.
"""

# No ``from __future__ import annotations``: FastAPI reads the endpoints' annotations (``WebSocket``, imported
# inside make_app so that this module imports without the ui extra) when they are defined.
import hmac
from pathlib import Path
from typing import Any

from clonekit.errors import ConfigError
from clonekit.interactive.browse import Browse

LOCAL_HOSTS = ("127.0.0.1", "localhost", "::1")
STATIC = Path(__file__).with_name("static")


def check_bind(host: str, token: str | None) -> None:
    """A non-local bind without a token is refused (one-line ``ConfigError``)."""
    if host not in LOCAL_HOSTS and not token:
        raise ConfigError(
            f"serve --host {host}: binding beyond this machine needs --token (or CLONEKIT_TOKEN); "
            "without one, bind 127.0.0.1"
        )


def require_ui() -> None:
    """A one-line ``ConfigError`` when the ``ui`` extra is missing."""
    try:
        import fastapi  # noqa: F401
        import PIL  # noqa: F401
        import uvicorn  # noqa: F401
    except ImportError as err:
        raise ConfigError(f"clonekit serve needs the ui extra (pip install 'clonekit[ui]'): {err}") from err


def _flag(value: str | None, name: str) -> bool | None:
    if value is None or value == "":
        return None
    if value in ("1", "true", "yes"):
        return True
    if value in ("0", "false", "no"):
        return False
    raise ConfigError(f"{name}: expected 1/0, true/false or yes/no, got {value!r}")


def make_app(browse: Browse, token: str | None = None, live: Any = None, step_interval: float = 0.25) -> Any:
    """The FastAPI app serving ``browse`` (and requiring ``token`` on every API request when given); with a
    :class:`clonekit.interactive.live.LiveSession`, also the live page (``/live``) and its WebSocket."""
    from fastapi import FastAPI, Request, WebSocket, WebSocketDisconnect
    from fastapi.responses import FileResponse, JSONResponse, Response
    from fastapi.staticfiles import StaticFiles

    app = FastAPI(title="clonekit", docs_url=None, redoc_url=None, openapi_url=None)

    @app.middleware("http")
    async def authorize(request: Request, call_next: Any) -> Any:
        if token and request.url.path.startswith("/api/"):  # the page and its scripts hold no data
            given = request.query_params.get("token") or ""
            header = request.headers.get("authorization", "")
            if header.startswith("Bearer "):
                given = header[len("Bearer ") :]
            if not hmac.compare_digest(given.encode(), token.encode()):
                return JSONResponse({"error": "a valid token is required"}, status_code=401)
        return await call_next(request)

    @app.exception_handler(ConfigError)
    async def not_found(request: Request, err: ConfigError) -> Any:  # bad indices or filters: one line
        return JSONResponse({"error": str(err)}, status_code=404)

    @app.get("/")
    def index() -> Any:
        return FileResponse(STATIC / "index.html", media_type="text/html")

    @app.get("/api/summary")
    def summary() -> Any:
        return browse.summary()

    @app.get("/api/episodes")
    def episodes(success: str | None = None, demonstrator: str | None = None, intervention: str | None = None) -> Any:
        return browse.episodes(
            success=_flag(success, "success"),
            demonstrator=demonstrator or None,
            intervention=_flag(intervention, "intervention"),
        )

    @app.get("/api/datasets/{which}/episodes/{index}")
    def steps(which: int, index: int) -> Any:
        return browse.steps(which, index)

    @app.get("/api/datasets/{which}/episodes/{index}/frames/{step}.png")
    def frame(which: int, index: int, step: int) -> Any:
        return Response(browse.frame_png(which, index, step), media_type="image/png")

    @app.get("/api/plots/{name}")
    def plot(name: str) -> Any:
        return FileResponse(browse.plot_path(name), media_type="image/png")

    @app.get("/live")
    def live_page() -> Any:
        if live is None:
            raise ConfigError("no live session: start the server with `clonekit serve RUN --live`")
        return FileResponse(STATIC / "live.html", media_type="text/html")

    @app.websocket("/api/live")
    async def live_socket(socket: WebSocket) -> None:
        given = socket.query_params.get("token") or ""
        if live is None or (token and not hmac.compare_digest(given.encode(), token.encode())):
            await socket.close(code=4401 if live is not None else 4404)
            return
        await socket.accept()
        await _play(socket, live, step_interval, WebSocketDisconnect)

    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    return app


async def _play(socket: Any, live: Any, step_interval: float, disconnect: type[Exception]) -> None:
    """Send the session's state after every step; step the policy every ``step_interval`` seconds while it is
    in control; apply the page's messages (``takeover``, ``release``, ``action``, ``end``) as they come."""
    import asyncio

    async def send(state: dict[str, Any]) -> None:  # the interval paces a person's held continuous input too
        await socket.send_json({"type": "state", "step_interval": step_interval, **state})

    # One change of the session at a time, its state sent before the next: the policy's step (in a worker
    # thread) and a message from the page (a take-over, the person's action) would otherwise step the same
    # env at once, or a policy step begun just before a take-over would run while the person is in control.
    turn = asyncio.Lock()

    async def ticker() -> None:
        while True:
            await asyncio.sleep(step_interval)
            async with turn:
                if not live.human:
                    await send(await asyncio.to_thread(live.step))

    await send(live.state())
    ticking = asyncio.create_task(ticker())
    try:
        while True:
            message = await socket.receive_json()
            kind = message.get("type") if isinstance(message, dict) else None
            async with turn:
                try:
                    if kind == "takeover":
                        state = live.set_control(True)
                    elif kind == "release":
                        state = live.set_control(False)
                    elif kind == "end":
                        state = await asyncio.to_thread(live.end_episode)
                    elif kind == "action" and live.human:
                        state = await asyncio.to_thread(live.step, message.get("action"))
                    else:
                        raise ConfigError(f"live: unexpected message {message!r} (control: {live.state()['control']})")
                except ConfigError as err:
                    await socket.send_json({"type": "error", "error": str(err)})
                    continue
                await send(state)
    except disconnect:
        pass
    finally:
        ticking.cancel()


def serve(
    browse: Browse,
    host: str = "127.0.0.1",
    port: int = 8765,
    token: str | None = None,
    live: Any = None,
    step_interval: float = 0.25,
) -> None:
    """Serve the page for ``browse`` (and ``live``) until interrupted (checks the bind and the extra first)."""
    check_bind(host, token)
    require_ui()
    import uvicorn

    app = make_app(browse, token, live, step_interval)
    uvicorn.run(app, host=host, port=port, log_level="warning")
