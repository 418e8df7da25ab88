"""The ASGI app: routes, API keys, health, metrics and the web page.

The model loads in a thread after the app starts, so /health can answer 503
("Loading model") until it is ready, and 200 after; every model route answers
503 until then too. The OpenAI routes themselves are in openai_routes.py.
"""

from __future__ import annotations

import hmac
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from fastapi import FastAPI, Request
from fastapi.responses import FileResponse, PlainTextResponse
from fastapi.staticfiles import StaticFiles

from ..devices import check_device
from . import errors
from .errors import APIError

STATIC = Path(__file__).parent / "static"
# Routes anyone may reach with --api-key set: the health check (load balancers) and the page, which asks for
# the key when /props answers 401.
_OPEN_PATHS = ("/health", "/")
# The page and its files are revalidated on every load, so an upgraded server never pairs a new index.html
# with a cached old app.js.
_NO_CACHE = {"Cache-Control": "no-cache"}


@dataclass
class ServerConfig:
    """What `quanta serve` takes. ctx_size: KV cells shared by all slots (None: 4096 per slot, at
    most the model's training context per slot). timeout: seconds a request may run."""
    model: str
    parallel: int = 4
    ctx_size: Optional[int] = None
    n_threads: Optional[int] = None
    n_batch: int = 512
    max_queue: int = 64
    api_key: Optional[str] = None
    timeout: float = 600.0
    model_name: Optional[str] = None  # the id /v1/models shows; the file's stem by default
    sd_model: Optional[str] = None  # a Stable Diffusion GGUF for /v1/images/generations
    sd_loras: tuple = ()  # (path, weight) LoRA files merged into sd_model at load
    device: str = "auto"  # where the LLM runs: "auto", "cpu" or "cuda" (quanta.LLM's device)

    def __post_init__(self):
        if self.parallel < 1:
            raise ValueError(f"parallel must be at least 1, not {self.parallel}")
        if self.max_queue < 0:
            raise ValueError(f"max_queue must not be negative, not {self.max_queue}")
        if self.ctx_size is not None and self.ctx_size < self.parallel:
            raise ValueError(f"ctx_size ({self.ctx_size}) must be at least parallel ({self.parallel})")
        if not self.timeout > 0:
            raise ValueError(f"timeout must be positive, not {self.timeout}")
        check_device(self.device)


class Server:
    """The loaded model and its engine, once ready."""

    def __init__(self, config: ServerConfig):
        self.config = config
        self.model_id = config.model_name or Path(config.model).stem
        self.created = int(time.time())
        self.sd_model_id = Path(config.sd_model).stem if config.sd_model else None
        self.llm = None
        self.diffusion = None
        self.engine = None
        self.grammars = None
        self.load_error: Optional[str] = None
        self.ready = threading.Event()

    def load(self) -> None:
        from ..llm import LLM
        from .engine import Engine
        from .structured import Grammars

        c = self.config
        try:
            ctx = c.ctx_size or c.parallel * min(4096, _train_context(c.model))
            llm = LLM(c.model, n_ctx=ctx, n_threads=c.n_threads, n_batch=c.n_batch, n_seq=c.parallel, device=c.device)
            self.llm, self.grammars = llm, Grammars(llm._tokenizer, llm.n_vocab)
            self.grammars.warm()  # about a second for 150k tokens, now rather than in the first request
            if c.sd_model:
                from ..diffusion import Diffusion

                self.diffusion = Diffusion(c.sd_model, n_threads=c.n_threads, loras=c.sd_loras)
            self.engine = Engine(llm, max_queue=c.max_queue)
        except Exception as e:
            self.load_error = f"{type(e).__name__}: {e}"
        finally:
            self.ready.set()

    def problem(self) -> Optional[str]:
        """Why the server cannot generate now (None when it can)."""
        if not self.ready.is_set():
            return "Loading model"
        if self.engine is None:
            return f"the model failed to load: {self.load_error}"
        if not self.engine.alive:
            return "the engine's worker thread has stopped"
        return None

    def require(self) -> None:
        """Raises the 503 a model route gives when the server cannot generate (while loading)."""
        problem = self.problem()
        if problem:
            raise APIError(503, problem)

    def close(self) -> None:
        if self.engine is not None:
            self.engine.close()


def create_app(config: "ServerConfig | str", wait: bool = False, **options) -> FastAPI:
    """The server's ASGI app. config: a ServerConfig, or a model path with ServerConfig's options.
    The model loads in a thread when the app starts (wait=True: before create_app returns)."""
    from contextlib import asynccontextmanager

    from . import image_routes, openai_routes

    if not isinstance(config, ServerConfig):
        config = ServerConfig(model=str(config), **options)
    server = Server(config)
    loader = threading.Thread(target=server.load, name="quanta-load", daemon=True)
    if wait:
        server.load()

    @asynccontextmanager
    async def lifespan(app):
        if not server.ready.is_set() and not loader.is_alive():
            loader.start()
        yield
        server.close()

    app = FastAPI(title="quanta", lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None)
    app.state.server = server
    errors.install(app)

    @app.middleware("http")
    async def api_key(request: Request, call_next):
        key = config.api_key
        path = request.url.path
        if key and path not in _OPEN_PATHS and not path.startswith("/static/"):
            given = request.headers.get("x-api-key")
            auth = request.headers.get("authorization", "")
            if auth.lower().startswith("bearer "):
                given = auth[7:].strip()
            if given is None:
                return errors.error_response(401, "Missing API key: send 'Authorization: Bearer KEY'")
            if not hmac.compare_digest(given.encode(), key.encode()):
                return errors.error_response(401, "Invalid API key", code="invalid_api_key")
        return await call_next(request)

    @app.get("/health")
    async def health():
        problem = server.problem()
        return errors.error_response(503, problem) if problem else {"status": "ok"}

    @app.get("/metrics")
    async def metrics():
        return PlainTextResponse(_metrics_text(server), media_type="text/plain; version=0.0.4")

    @app.get("/v1/models")
    async def models():
        return {"object": "list", "data": [_model_card(server, i) for i in _model_ids(server)]}

    @app.get("/v1/models/{model_id:path}")
    async def model(model_id: str):
        if model_id not in _model_ids(server):
            raise APIError(404, f"The model '{model_id}' does not exist", param="model", code="model_not_found")
        return _model_card(server, model_id)

    @app.get("/")
    async def page():
        return FileResponse(STATIC / "index.html")

    @app.get("/props")
    async def props():
        """What the web page needs to know: the model, the slots, the context, whether a key is needed."""
        server.require()
        return {"model": server.model_id, "parallel": server.engine.parallel, "n_ctx": server.llm.n_ctx,
                "api_key_required": bool(config.api_key), "image_model": server.sd_model_id}

    @app.middleware("http")
    async def no_cache_page(request: Request, call_next):
        response = await call_next(request)
        if request.url.path == "/" or request.url.path.startswith("/static/"):
            response.headers.update(_NO_CACHE)
        return response

    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    openai_routes.register(app, server)
    image_routes.register(app, server)
    return app


def _train_context(path: str) -> int:
    from ..gguf import GGUF

    meta = GGUF(path).metadata
    return int(meta.get(f"{meta.get('general.architecture', '')}.context_length") or 4096)


def _model_ids(server: Server) -> list:
    return [server.model_id] + ([server.sd_model_id] if server.sd_model_id else [])


def _model_card(server: Server, model_id: str) -> dict:
    return {"id": model_id, "object": "model", "created": server.created, "owned_by": "quanta"}


def _metrics_text(server: Server) -> str:
    """Prometheus text format: counters and gauges of the engine."""
    engine = server.engine
    s = engine.stats if engine else None
    rows = [
        ("requests_total", "counter", "Generation requests accepted.", s.requests if s else 0),
        ("requests_rejected_total", "counter", "Requests refused with 429 (queue full).", s.rejected if s else 0),
        ("prompt_tokens_total", "counter", "Prompt tokens of finished requests.", s.prompt_tokens if s else 0),
        ("prompt_tokens_cached_total", "counter", "Prompt tokens reused from the KV cache.",
         s.cached_tokens if s else 0),
        ("completion_tokens_total", "counter", "Tokens generated.", s.completion_tokens if s else 0),
        ("decode_steps_total", "counter", "Engine steps (one batch each).", s.steps if s else 0),
        ("queue_depth", "gauge", "Requests waiting for a slot.", s.queued if s else 0),
        ("busy_slots", "gauge", "Slots running a request.", s.busy_slots if s else 0),
        ("slots", "gauge", "Parallel slots (--parallel).", engine.parallel if engine else 0),
        ("ready", "gauge", "1 once the model is loaded.", 1 if engine else 0),
    ]
    lines = []
    for name, kind, help_text, value in rows:
        lines += [f"# HELP quanta_{name} {help_text}", f"# TYPE quanta_{name} {kind}", f"quanta_{name} {value}"]
    return "\n".join(lines) + "\n"

