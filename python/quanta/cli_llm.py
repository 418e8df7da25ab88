"""`quanta run`, `quanta chat` and `quanta bench`: the LLM commands.

Generated text goes to stdout and nothing else does; loading messages,
progress and timings go to stderr, so `quanta run ... > out.txt` captures
exactly the model's text.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time


def register(sub) -> None:
    run = sub.add_parser("run", help="generate text from a prompt")
    _model_args(run)
    run.add_argument("-p", "--prompt", required=True, help="the prompt text")
    _sampling_args(run, n_default=256)
    run.set_defaults(handler=_cmd_run)

    chat = sub.add_parser("chat", help="chat with a model (its chat template); Ctrl-C stops a reply, Ctrl-D quits")
    _model_args(chat)
    chat.add_argument("--system", help="a system prompt")
    _sampling_args(chat, n_default=1024)
    chat.set_defaults(handler=_cmd_chat)

    bench = sub.add_parser("bench", help="measure prompt processing and generation speed, like llama-bench")
    bench.add_argument("-m", "--model", required=True, help="a .gguf file")
    bench.add_argument("-p", "--n-prompt", type=int, default=512, help="prompt tokens, evaluated as one batch")
    bench.add_argument("-n", "--n-gen", type=int, default=128, help="tokens generated one at a time")
    bench.add_argument("-t", "--threads", type=int, default=None, help="CPU threads (default: every usable core; more are capped to that)")
    bench.add_argument("-r", "--repetitions", type=int, default=3, help="timed runs of each test")
    bench.add_argument("--json", action="store_true", help="print one JSON object with pp_tps and tg_tps")
    device_arg(bench)
    bench.set_defaults(handler=_cmd_bench)


def _model_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("-m", "--model", help="a .gguf file (default: the embedded default model, fetched on first use)")
    p.add_argument("-t", "--threads", type=int, default=None, help="CPU threads (default: every usable core; more are capped to that)")
    p.add_argument("-c", "--ctx-size", type=int, default=4096, help="context size in tokens")
    device_arg(p)


def device_arg(p: argparse.ArgumentParser) -> None:
    """--device, for every command that loads an LLM (quanta serve's too)."""
    from .devices import DEVICES

    p.add_argument("--device", choices=DEVICES, default="auto",
                   help="where the model runs: auto (the default) uses the first GPU when the model runs there, "
                        "else the CPU; cuda insists on the GPU")


def _sampling_args(p: argparse.ArgumentParser, n_default: int) -> None:
    p.add_argument("-n", "--n-predict", type=int, default=n_default, help="most tokens to generate")
    p.add_argument("--temp", type=float, default=0.8, help="temperature; 0 is greedy")
    p.add_argument("--top-k", type=int, default=40)
    p.add_argument("--top-p", type=float, default=0.95)
    p.add_argument("--min-p", type=float, default=0.05)
    p.add_argument("--repeat-penalty", type=float, default=1.0)
    p.add_argument("--seed", type=int, default=None, help="sampling seed (default: random)")
    p.add_argument("--stop", action="append", default=None, help="a stop string (repeatable)")


def _sampling(args) -> dict:
    return dict(max_tokens=args.n_predict, temperature=args.temp, top_k=args.top_k, top_p=args.top_p,
                min_p=args.min_p, repeat_penalty=args.repeat_penalty, seed=args.seed, stop=args.stop)


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _load(args):
    from . import fetch
    from .llm import LLM
    from .threads import cli_threads

    n_threads = cli_threads(args.threads)  # a bad -t fails before the model is fetched
    path = args.model or str(fetch.fetch(fetch.DEFAULT_MODEL))
    t0 = time.perf_counter()
    llm = LLM(path, n_ctx=args.ctx_size, n_threads=n_threads, device=args.device)
    _log(f"quanta: loaded {path} ({llm.config['arch']}, {llm.n_vocab} tokens) in "
         f"{time.perf_counter() - t0:.2f} s, {_where(llm)}")
    return llm


def _where(model) -> str:
    """How a loaded quanta.LLM or quanta.Diffusion runs, for its load message: "4 threads" or "on cuda"."""
    return f"{model.n_threads} threads" if model.device == "cpu" else f"on {model.device}"


def _stream(pieces) -> int:
    """Writes pieces to stdout as they come; returns how many."""
    n = 0
    for piece in pieces:
        sys.stdout.write(piece)
        sys.stdout.flush()
        n += 1
    return n


def _cmd_run(args) -> int:
    llm = _load(args)
    t0 = time.perf_counter()
    ids = llm.tokenize(args.prompt)
    n_prompt = len(ids)
    _stream(llm.generate(ids, stream=True, **_sampling(args)))
    sys.stdout.write("\n")
    elapsed = time.perf_counter() - t0
    n_gen = llm.n_generated
    _log(f"quanta: {n_prompt} prompt + {n_gen} generated tokens in {elapsed:.2f} s "
         f"({n_gen / elapsed if elapsed else 0:.1f} tokens/s overall)")
    return 0


def _read_message(prompt: str):
    """One user message: a line, continued while lines end with a backslash. None at end of input."""
    lines = []
    while True:
        try:
            line = input(prompt if not lines else "... ")
        except EOFError:
            return "\n".join(lines) if lines else None
        if line.endswith("\\"):
            lines.append(line[:-1])
            continue
        lines.append(line)
        return "\n".join(lines)


def _cmd_chat(args) -> int:
    llm = _load(args)
    llm.render_chat([{"role": "user", "content": "x"}])  # fails now, not at the first message, without a template
    messages = [{"role": "system", "content": args.system}] if args.system else []
    interactive = sys.stdin.isatty()
    if interactive:
        _log("quanta: chat. End a line with \\ to continue it; Ctrl-C stops a reply; Ctrl-D quits.")
    while True:
        try:
            text = _read_message("> " if interactive else "")
        except KeyboardInterrupt:
            print(file=sys.stderr)
            return 0
        if text is None:
            return 0
        if not text.strip():
            continue
        messages.append({"role": "user", "content": text})
        reply = []
        try:
            for piece in llm.chat(messages, stream=True, **_sampling(args)):
                reply.append(piece)
                sys.stdout.write(piece)
                sys.stdout.flush()
        except KeyboardInterrupt:
            _log("\nquanta: reply stopped")
        sys.stdout.write("\n")
        sys.stdout.flush()
        messages.append({"role": "assistant", "content": "".join(reply)})


def _cmd_bench(args) -> int:
    import numpy as np

    from .llm import LLM
    from .threads import cli_threads

    if args.n_prompt < 0 or args.n_gen < 0 or args.repetitions < 1:
        raise ValueError("bench needs -p >= 0, -n >= 0 and -r >= 1")
    llm = LLM(args.model, n_ctx=max(args.n_prompt + args.n_gen, 16), n_threads=cli_threads(args.threads),
              n_batch=max(args.n_prompt, 1), device=args.device)
    ctx = llm._ctx
    rng = np.random.default_rng(0)

    def pp() -> float:
        ids = rng.integers(0, llm.n_vocab, args.n_prompt)
        ctx.truncate(0)
        t0 = time.perf_counter()
        ctx.eval(ids)
        return args.n_prompt / (time.perf_counter() - t0)

    def tg() -> float:
        # As llama-bench: generation from an empty context, one token per step.
        ctx.truncate(0)
        token = int(rng.integers(0, llm.n_vocab))
        t0 = time.perf_counter()
        for _ in range(args.n_gen):
            ctx.eval([token])
        return args.n_gen / (time.perf_counter() - t0)

    results = {"model": llm.path, "arch": llm.config["arch"], "threads": llm.n_threads,
               "n_prompt": args.n_prompt, "n_gen": args.n_gen, "repetitions": args.repetitions}
    for name, test, n in (("pp", pp, args.n_prompt), ("tg", tg, args.n_gen)):
        if n == 0:
            continue
        test()  # warm-up: page in the weights, size the arena
        runs = [test() for _ in range(args.repetitions)]
        results[f"{name}_tps"] = statistics.mean(runs)
        results[f"{name}_tps_std"] = statistics.stdev(runs) if len(runs) > 1 else 0.0
        if not args.json:
            print(f"{name}{n:<6} {results[f'{name}_tps']:10.2f} ± {results[f'{name}_tps_std']:.2f} tokens/s  "
                  f"({llm.config['arch']}, {llm.n_threads} threads)")
    if args.json:
        print(json.dumps(results))
    return 0
