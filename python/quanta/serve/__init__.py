"""`quanta serve`: an OpenAI-compatible HTTP server over one model, with continuous
batching, structured output and a web page. Needs the extra `quanta[server]`.

    from quanta.serve import create_app
    app = create_app("model.gguf", parallel=4)    # an ASGI app: uvicorn.run(app)
"""

from .app import ServerConfig, create_app

__all__ = ["ServerConfig", "create_app"]
