# quanta.serve.ray: the OpenAI-compatible server (quanta.serve) as a Ray Serve deployment, so one
# model can be served by several replicas, on one machine or a Ray cluster, behind Ray's HTTP proxy.
# Why: one quanta server owns one model and one engine (continuous batching over `parallel` slots);
# past what one process can decode, more replicas are the way to scale, and Ray Serve brings the
# routing, the health checks and the autoscaling on ongoing requests. Each replica runs the very
# FastAPI app create_app() builds (same routes, streaming, OpenAI-shaped errors); this module only
# places and sizes the replicas. Ray is an optional dependency: only this module imports it.
"""Ray Serve deployment of the quanta server.

    import ray
    from ray import serve
    from quanta.serve.ray import deployment

    ray.init()
    serve.start(http_options={"host": "127.0.0.1", "port": 8000})
    serve.run(deployment("model.gguf", num_replicas=2, cores_per_replica=4, parallel=4))
    # http://127.0.0.1:8000/v1/chat/completions, ... as `quanta serve`; each reply names
    # the replica that served it in the header x-quanta-replica.

or from the command line (starts a local Ray, or joins the one RAY_ADDRESS or --address names):

    python -m quanta.serve.ray -m model.gguf --replicas 2 --cores-per-replica 4 --port 8000
    python -m quanta.serve.ray -m model.gguf --autoscale 1:4 --cores-per-replica 4

A replica becomes ready (and is sent requests) only once its model has loaded. A client that
goes away cancels its request: Ray's proxy cancels the replica's handler, which cancels the
request's engine jobs as a direct connection does.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
import time
from typing import Any, Dict, Optional, Union

from ray import serve

from .app import ServerConfig, create_app

__all__ = ["QuantaDeployment", "deployment", "main"]

REPLICA_HEADER = "x-quanta-replica"


class _ReplicaHeader:
    """ASGI middleware: names the replica (header x-quanta-replica) in the responses of the app
    (not in those of Ray's proxy, nor in a 500 for an uncaught error)."""

    def __init__(self, app, replica: str):
        self.app, self.replica = app, replica.encode()

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)

        async def send_named(message):
            if message["type"] == "http.response.start":
                message = dict(message, headers=[*message.get("headers", []), (REPLICA_HEADER.encode(), self.replica)])
            await send(message)

        await self.app(scope, receive, send_named)


try:  # an ingress whose app each replica builds (__serve_build_asgi_app__): Ray 2.60 has it
    _late_ingress = serve.ingress()
except TypeError:
    import ray as _ray

    raise ImportError(f"quanta.serve.ray needs ray[serve] >= 2.60, not {_ray.__version__}") from None


@serve.deployment(name="quanta")
@_late_ingress
class QuantaDeployment:
    """One replica: the server's app over one model (a ServerConfig). Ray builds the app at the
    replica's start (__serve_build_asgi_app__) and loads the model before the replica is ready."""

    def __init__(self, config: ServerConfig):
        self._config = config
        self._server = None
        try:
            self.replica_id = serve.get_replica_context().replica_id.unique_id
        except Exception:  # outside a replica (a unit test constructing the class)
            self.replica_id = "local"

    async def __serve_build_asgi_app__(self):
        app = create_app(self._config)
        server = app.state.server
        # Load now, off the replica's event loop: the lifespan then finds the model loaded, and Ray
        # marks the replica running only when it can answer. A model that fails to load fails the
        # replica's start (Ray retries it and reports the error in serve.status()).
        await asyncio.to_thread(server.load)
        if server.engine is None:
            raise RuntimeError(f"quanta: the model failed to load: {server.load_error}")
        self._server = server
        app.add_middleware(_ReplicaHeader, replica=self.replica_id)
        return app

    def check_health(self) -> None:
        """Ray's periodic health check: the model is loaded and its engine's worker is alive."""
        problem = "the model is not loaded" if self._server is None else self._server.problem()
        if problem:
            raise RuntimeError(f"quanta: {problem}")


def deployment(model, *, num_replicas: Union[int, str] = 1, cores_per_replica: Optional[int] = None,
               gpus_per_replica: float = 0, min_replicas: int = 1, max_replicas: Optional[int] = None,
               target_ongoing_requests: Optional[float] = None, max_ongoing_requests: Optional[int] = None,
               name: str = "quanta", deployment_options: Optional[Dict[str, Any]] = None,
               **server_options) -> "serve.Application":
    """The quanta server as a Ray Serve application, for serve.run(...).

    model: a .gguf path every node can read (or a ServerConfig; then no server_options).
    num_replicas: a fixed count, or "auto": autoscaling between min_replicas and max_replicas
      (Ray's default maximum when None) on ongoing requests, aiming at target_ongoing_requests
      per replica (default: its `parallel` slots, so a replica is scaled out when its slots are full).
    cores_per_replica: CPUs Ray reserves for each replica, and the model's threads (n_threads),
      so several replicas share a node without contending for cores. None: Ray reserves 1 CPU and
      the model uses every core of its node (n_threads unless given), for one replica per node.
    gpus_per_replica: GPUs Ray reserves for each replica (Ray sets CUDA_VISIBLE_DEVICES). Note:
      quanta.LLM runs the model on the CPU today, so this only places replicas one per GPU.
    max_ongoing_requests: requests Ray sends one replica at once (default 2 x parallel: its slots
      and as many waiting, so a slot that frees starts the next at once); the rest wait in Ray's
      router for the first free replica rather than in one replica's queue.
    deployment_options: any other Ray Serve deployment option (e.g. max_queued_requests,
      health_check_period_s, ray_actor_options), applied last.
    server_options: ServerConfig's options (parallel, ctx_size, n_threads, max_queue, api_key,
      timeout, model_name, ...).
    """
    if isinstance(model, ServerConfig):
        if server_options:
            raise TypeError("pass server options in the ServerConfig, not beside it")
        config = model
    else:
        if cores_per_replica is not None and server_options.get("n_threads") is None:
            server_options["n_threads"] = cores_per_replica
        config = ServerConfig(model=str(model), **server_options)
    if cores_per_replica is not None and cores_per_replica <= 0:
        raise ValueError(f"cores_per_replica must be positive, not {cores_per_replica}")
    if gpus_per_replica < 0:
        raise ValueError(f"gpus_per_replica must not be negative, not {gpus_per_replica}")

    actor: Dict[str, Any] = {"num_cpus": cores_per_replica if cores_per_replica is not None else 1}
    if gpus_per_replica:
        actor["num_gpus"] = gpus_per_replica
    options: Dict[str, Any] = {
        "name": name,
        "ray_actor_options": actor,
        "max_ongoing_requests": max_ongoing_requests or 2 * config.parallel,
    }
    if num_replicas == "auto":
        scaling: Dict[str, Any] = {"min_replicas": min_replicas,
                                   "target_ongoing_requests": target_ongoing_requests or config.parallel}
        if max_replicas is not None:
            if max_replicas < max(min_replicas, 1):
                raise ValueError(f"max_replicas ({max_replicas}) must be at least min_replicas ({min_replicas}) and 1")
            scaling["max_replicas"] = max_replicas
        options["autoscaling_config"] = scaling
    elif isinstance(num_replicas, int) and not isinstance(num_replicas, bool) and num_replicas >= 1:
        options["num_replicas"] = num_replicas
    else:
        raise ValueError(f"num_replicas must be a positive count or 'auto', not {num_replicas!r}")
    extra = dict(deployment_options or {})
    actor.update(extra.pop("ray_actor_options", None) or {})
    options.update(extra)
    return QuantaDeployment.options(**options).bind(config)


# ---- the launcher: python -m quanta.serve.ray ----------------------------------------


def _autoscale(text: str):
    try:
        low, high = (int(x) for x in text.split(":"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"--autoscale takes MIN:MAX, e.g. 1:4, not {text!r}") from None
    if low < 0 or high < max(low, 1):
        raise argparse.ArgumentTypeError(f"--autoscale {text}: need 0 <= MIN <= MAX and MAX >= 1")
    return low, high


def _interrupt(signum, frame):
    raise KeyboardInterrupt


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m quanta.serve.ray",
                                description="Serve a model with the quanta server's OpenAI routes on Ray Serve "
                                            "replicas, behind Ray's HTTP proxy.")
    p.add_argument("-m", "--model", help="a .gguf file every node can read (default: the embedded default model)")
    p.add_argument("--replicas", type=int, default=1, help="replicas (default 1); see --autoscale")
    p.add_argument("--autoscale", type=_autoscale, metavar="MIN:MAX",
                   help="autoscale between MIN and MAX replicas on ongoing requests (instead of --replicas)")
    p.add_argument("--target-ongoing", type=float, default=None,
                   help="ongoing requests per replica autoscaling aims at (default: --parallel)")
    p.add_argument("--cores-per-replica", type=int, default=None,
                   help="CPUs reserved for each replica, and its model's threads "
                        "(default: 1 reserved, every core used)")
    p.add_argument("--gpus-per-replica", type=float, default=0, help="GPUs reserved for each replica (default 0)")
    p.add_argument("--host", default="127.0.0.1", help="address Ray's proxy binds (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=8000,
                   help="port of Ray's proxy (default 8000; a Serve already running keeps its own)")
    p.add_argument("--address", default=None,
                   help="a Ray cluster to join (default: RAY_ADDRESS, a local cluster 'ray start' made, or a new one)")
    p.add_argument("-np", "--parallel", type=int, default=4, help="slots per replica (default 4)")
    p.add_argument("-c", "--ctx-size", type=int, default=None, help="KV cells per replica, shared by its slots")
    p.add_argument("--max-queue", type=int, default=64, help="requests that may wait in one replica")
    p.add_argument("--api-key", default=None, help="require this key (as quanta serve)")
    p.add_argument("--timeout", type=float, default=600.0, help="seconds a request may run (default 600)")
    p.add_argument("--alias", default=None, help="the model id /v1/models reports (default: the file's name)")
    args = p.parse_args(argv)

    import ray

    from .. import fetch
    from ..gguf import GGUF

    path = args.model or str(fetch.fetch(fetch.DEFAULT_MODEL))
    GGUF(path)  # a missing or broken file: one line now, not failing replicas later
    if args.autoscale:
        replicas: Dict[str, Any] = {"num_replicas": "auto", "min_replicas": args.autoscale[0],
                                    "max_replicas": args.autoscale[1]}
    else:
        replicas = {"num_replicas": args.replicas}
    try:
        app = deployment(path, **replicas, target_ongoing_requests=args.target_ongoing,
                         cores_per_replica=args.cores_per_replica, gpus_per_replica=args.gpus_per_replica,
                         parallel=args.parallel, ctx_size=args.ctx_size, max_queue=args.max_queue,
                         api_key=args.api_key, timeout=args.timeout, model_name=args.alias)
    except ValueError as e:
        p.error(str(e))
    ray.init(address=args.address)
    signal.signal(signal.SIGTERM, _interrupt)  # stop as on Ctrl-C: the replicas shut their engines down
    try:
        serve.start(http_options={"host": args.host, "port": args.port})
        serve.run(app, name="quanta", route_prefix="/")
        print(f"quanta: serving {path} on http://{args.host}:{args.port} with Ray Serve "
              f"({'autoscaling %d:%d' % args.autoscale if args.autoscale else '%d replica(s)' % args.replicas}); "
              "Ctrl-C stops", file=sys.stderr)
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        serve.delete("quanta")  # this app only: a cluster joined with --address keeps its other apps
        ray.shutdown()
    return 0


if __name__ == "__main__":
    # Run through the package's module, so Ray pickles QuantaDeployment by reference, not __main__'s copy.
    from quanta.serve.ray import main as _main

    sys.exit(_main())
