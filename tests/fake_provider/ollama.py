"""Ollama: chat and generate (NDJSON streams), embeddings, tags, show and version."""

from __future__ import annotations

import time
from collections.abc import Callable

from .options import EMBEDDING_DIMS
from .replies import _HOLE, NDJSON, Reply, StreamReply, _Call, _dumps, _embedding_inputs, _json, _template, _vector


def _ollama_time() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S.000000000Z", time.gmtime())


def _ollama_final(c: _Call) -> dict:
    p, o = c.prompt_tokens(), c.answer_tokens()
    # Fixed per-token durations keep the numbers deterministic and plausible.
    load, prompt_eval, evaluation = 1_000_000, p * 100_000, o * 10_000_000
    return {
        "done": True,
        "done_reason": "stop",
        "total_duration": load + prompt_eval + evaluation,
        "load_duration": load,
        "prompt_eval_count": p,
        "prompt_eval_duration": prompt_eval,
        "eval_count": o,
        "eval_duration": evaluation,
    }


def _ollama(c: _Call, piece: Callable[[str], dict], final_extra: dict) -> Reply | StreamReply:
    model = c.data.get("model") or "llama3.2"
    if c.data.get("stream", True) is False:
        return _json(
            {"model": model, "created_at": _ollama_time(), **piece(c.opts.text), **_ollama_final(c), **final_extra}
        )
    partial = _template({"model": model, "created_at": _ollama_time(), **piece(_HOLE), "done": False})
    chunks = [partial(p) + b"\n" for p in c.stream_pieces()]
    last = {"model": model, "created_at": _ollama_time(), **piece(""), **_ollama_final(c), **final_extra}
    return StreamReply(NDJSON, [], chunks, [_dumps(last) + b"\n"])


def ollama_chat(c: _Call) -> Reply | StreamReply:
    return _ollama(c, lambda text: {"message": {"role": "assistant", "content": text}}, {})


def ollama_generate(c: _Call) -> Reply | StreamReply:
    context = list(range(1, c.prompt_tokens() + c.answer_tokens() + 1))
    return _ollama(c, lambda text: {"response": text}, {"context": context})


def ollama_embed(c: _Call) -> Reply:
    inputs = _embedding_inputs(c.data.get("input"))
    return _json(
        {
            "model": c.data.get("model") or "nomic-embed-text",
            "embeddings": [_vector(text, EMBEDDING_DIMS) for text in inputs],
            "total_duration": 1_000_000,
            "load_duration": 100_000,
            "prompt_eval_count": c.prompt_tokens(),
        }
    )


def ollama_embeddings(c: _Call) -> Reply:
    return _json({"embedding": _vector(str(c.data.get("prompt") or ""), EMBEDDING_DIMS)})


_OLLAMA_DETAILS = {
    "parent_model": "",
    "format": "gguf",
    "family": "llama",
    "families": ["llama"],
    "parameter_size": "3.2B",
    "quantization_level": "Q4_K_M",
}


def ollama_tags(c: _Call) -> Reply:
    model = {
        "name": "llama3.2:latest",
        "model": "llama3.2:latest",
        "modified_at": "2025-01-01T00:00:00.000000000Z",
        "size": 2019393189,
        "digest": "a80c4f17acd55265feec403c7aef86be0c25983ab279d83f3bcd3abbcb5b8b72",
        "details": _OLLAMA_DETAILS,
    }
    return _json({"models": [model]})


def ollama_show(c: _Call) -> Reply:
    return _json(
        {
            "modelfile": "FROM llama3.2\n",
            "parameters": 'stop "<|eot_id|>"',
            "template": "{{ .Prompt }}",
            "details": _OLLAMA_DETAILS,
            "model_info": {"general.architecture": "llama", "llama.context_length": 131072},
            "capabilities": ["completion", "tools"],
            "modified_at": "2025-01-01T00:00:00.000000000Z",
        }
    )


def ollama_version(c: _Call) -> Reply:
    return _json({"version": "0.9.0"})
