"""`quanta serve`: the OpenAI-compatible server (quanta.serve) under uvicorn.

It binds 127.0.0.1 unless told otherwise, prints where it listens on stderr,
and starts answering at once: /health says 503 until the model has loaded.
A model that fails to load ends the command with one line and exit code 1.
"""

from __future__ import annotations

import sys
import threading

from . import _core
from .cli_llm import device_arg
from .cli_sample import lora_arg
from .errors import UnsupportedError

CONTEXT_HELP = (
    "KV cells shared by all slots (default: 4096 per slot, at most the model's training context per slot). "
    "The context is unified, not split: one request may use up to all of it while others leave room. A request "
    "starts only when its prompt plus its max_tokens fit beside what the running requests may still take, so "
    "a running request is never cut short by others; a request without max_tokens may generate up to "
    "ctx-size/parallel tokens minus its prompt (at least 256), and prompt + max_tokens above ctx-size is refused "
    "with 400.")


def register(sub) -> None:
    p = sub.add_parser("serve", help="serve a model over HTTP with the OpenAI API and a web page",
                       description="An OpenAI-compatible server: /v1/chat/completions, /v1/completions, "
                                   "/v1/models, /tokenize, /detokenize, /health, /metrics, a chat page at /, and "
                                   "/v1/images/generations with --sd-model.")
    p.add_argument("-m", "--model", help="a .gguf file (default: the embedded default model, fetched on first use)")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=int, default=8080)
    p.add_argument("-np", "--parallel", type=int, default=4,
                   help="slots: requests that decode together in one batch (default 4)")
    p.add_argument("-c", "--ctx-size", type=int, default=None, help=CONTEXT_HELP)
    p.add_argument("-t", "--threads", type=int, default=None, help="CPU threads (default: every usable core)")
    device_arg(p)
    p.add_argument("--api-key", default=None,
                   help="require this key (Authorization: Bearer KEY, or X-Api-Key) on every route but /health "
                        "and the page")
    p.add_argument("--max-queue", type=int, default=64,
                   help="requests that may wait for a slot; beyond them the server answers 429 at once")
    p.add_argument("--timeout", type=float, default=600.0,
                   help="seconds a request may run; then it ends with finish_reason 'length' (default 600)")
    p.add_argument("--alias", default=None, help="the model id /v1/models reports (default: the file's name)")
    p.add_argument("--sd-model", default=None,
                   help="a Stable Diffusion .gguf file: serves /v1/images/generations (PNG images as b64_json)")
    p.add_argument("--lora", action="append", default=[], type=lora_arg, metavar="PATH[:WEIGHT]",
                   help="a LoRA safetensors file merged into --sd-model at load with WEIGHT (default 1); repeatable")
    p.set_defaults(handler=_cmd_serve)


def _cmd_serve(args) -> int:
    try:
        import uvicorn

        from .serve import ServerConfig, create_app
    except ImportError as e:
        raise ValueError(f"quanta serve needs the server extra: pip install 'quanta[server]' ({e})") from None
    from . import fetch

    if args.lora and not args.sd_model:
        raise ValueError("--lora needs --sd-model (LoRAs apply to the Stable Diffusion model)")
    path = args.model or str(fetch.fetch(fetch.DEFAULT_MODEL))
    config = ServerConfig(model=str(path), parallel=args.parallel, ctx_size=args.ctx_size, n_threads=args.threads,
                          max_queue=args.max_queue, api_key=args.api_key, timeout=args.timeout,
                          model_name=args.alias, sd_model=args.sd_model, sd_loras=tuple(args.lora), device=args.device)
    from .gguf import GGUF

    GGUF(config.model)  # a missing or broken file: one line now, not a 503 later
    cuda = _core.cuda_status()
    if config.device == "cuda" and not cuda["available"]:  # likewise a missing GPU
        raise UnsupportedError("CUDA is not available: " + cuda["reason"])
    if config.sd_model:
        GGUF(config.sd_model)
    app = create_app(config)
    server = app.state.server
    print(f"quanta: serving {server.model_id} on http://{_url_host(args.host)}:{args.port} "
          f"({args.parallel} slots; loading the model)", file=sys.stderr)
    uv = uvicorn.Server(uvicorn.Config(app, host=args.host, port=args.port, log_level="warning",
                                       timeout_graceful_shutdown=2))

    def report_load():
        server.ready.wait()
        if server.engine is None:
            print(f"quanta: error: {server.load_error}", file=sys.stderr)
            uv.should_exit = True
        else:
            print(f"quanta: model loaded; listening on http://{_url_host(args.host)}:{args.port}", file=sys.stderr)

    threading.Thread(target=report_load, daemon=True).start()
    uv.run()
    if server.ready.is_set() and server.engine is None:
        return 1
    return 0


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host
