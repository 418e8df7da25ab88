"""The request bodies the server accepts, as pydantic models: the OpenAI API's fields
with its ranges, plus quanta's sampler extras (top_k, min_p, repeat_penalty).

Unknown top-level fields are rejected (400), as the OpenAI API does; fields the
API defines that quanta has no use for (user, metadata, ...) are accepted and
ignored. Sampler fields left out take the engine's defaults, which are
llama.cpp's (temperature 0.8, top_k 40, top_p 0.95, min_p 0.05), not OpenAI's.
"""

from __future__ import annotations

from typing import Any, Dict, List, Literal, Optional, Union

from pydantic import BaseModel, ConfigDict, Field, field_validator

MAX_N = 16          # choices per request; each takes a slot
MAX_STOP = 4        # stop strings, as OpenAI
MAX_LOGIT_BIAS = 300


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class StreamOptions(_Body):
    include_usage: bool = False


class JsonSchema(BaseModel):
    model_config = ConfigDict(extra="allow", populate_by_name=True)
    name: str = "schema"
    description: Optional[str] = None
    schema_: Optional[Dict[str, Any]] = Field(default=None, alias="schema")
    strict: Optional[bool] = None


class ResponseFormat(_Body):
    type: Literal["text", "json_object", "json_schema"]
    json_schema: Optional[JsonSchema] = None


class Sampling(_Body):
    """The fields completions and chat completions share."""
    model: Optional[str] = None
    stream: bool = False
    stream_options: Optional[StreamOptions] = None
    max_tokens: Optional[int] = Field(default=None, ge=1)
    temperature: Optional[float] = Field(default=None, ge=0, le=2)
    top_p: Optional[float] = Field(default=None, gt=0, le=1)
    n: int = Field(default=1, ge=1, le=MAX_N)
    stop: Union[str, List[str], None] = None
    seed: Optional[int] = Field(default=None, ge=-(2**63), lt=2**64)
    presence_penalty: float = Field(default=0.0, ge=-2, le=2)
    frequency_penalty: float = Field(default=0.0, ge=-2, le=2)
    logit_bias: Optional[Dict[str, float]] = None
    response_format: Optional[ResponseFormat] = None
    # quanta's (and llama.cpp's) sampler extras
    top_k: Optional[int] = Field(default=None, ge=0)
    min_p: Optional[float] = Field(default=None, ge=0, le=1)
    repeat_penalty: Optional[float] = Field(default=None, gt=0)
    # accepted, ignored
    user: Optional[str] = None
    metadata: Optional[Dict[str, Any]] = None
    store: Optional[bool] = None
    service_tier: Optional[str] = None
    parallel_tool_calls: Optional[bool] = None
    modalities: Optional[List[str]] = None
    prediction: Optional[Dict[str, Any]] = None
    reasoning_effort: Optional[str] = None
    web_search_options: Optional[Dict[str, Any]] = None
    audio: Optional[Dict[str, Any]] = None

    @field_validator("stop")
    @classmethod
    def _stop(cls, v):
        stops = [v] if isinstance(v, str) else list(v or [])
        if len(stops) > MAX_STOP:
            raise ValueError(f"at most {MAX_STOP} stop sequences")
        return [s for s in stops if s]

    @field_validator("logit_bias")
    @classmethod
    def _logit_bias(cls, v):
        if v is None:
            return v
        if len(v) > MAX_LOGIT_BIAS:
            raise ValueError(f"at most {MAX_LOGIT_BIAS} logit_bias entries")
        out = {}
        for key, bias in v.items():
            try:
                token = int(key)
            except ValueError:
                raise ValueError(f"logit_bias keys are token ids, not {key!r}") from None
            if not -100 <= bias <= 100:
                raise ValueError(f"logit_bias values are in [-100, 100], not {bias}")
            out[token] = bias
        return out


class ContentPart(BaseModel):
    model_config = ConfigDict(extra="allow")
    type: str
    text: Optional[str] = None


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="allow")  # tool_calls, refusal, ... pass through to the template
    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: Union[str, List[ContentPart], None] = None
    name: Optional[str] = None

    def text(self) -> str:
        """The content as one string; only text parts are understood."""
        if self.content is None or isinstance(self.content, str):
            return self.content or ""
        parts = []
        for p in self.content:
            if p.type != "text" or p.text is None:
                raise ValueError(f"content parts of type {p.type!r} are not supported (text only)")
            parts.append(p.text)
        return "".join(parts)


class ChatRequest(Sampling):
    messages: List[ChatMessage] = Field(min_length=1)
    max_completion_tokens: Optional[int] = Field(default=None, ge=1)
    logprobs: bool = False
    top_logprobs: Optional[int] = Field(default=None, ge=0, le=20)


class CompletionRequest(Sampling):
    prompt: Union[str, List[int]]
    logprobs: Optional[int] = Field(default=None, ge=0, le=5)
    echo: bool = False

    @field_validator("prompt")
    @classmethod
    def _prompt(cls, v):
        if isinstance(v, list) and not v:
            raise ValueError("the prompt is empty")
        return v


class TokenizeRequest(_Body):
    content: str
    add_special: bool = False
    with_pieces: bool = False


class DetokenizeRequest(_Body):
    tokens: List[int]


MAX_IMAGES = 4  # images per request: one batch, the UNet at batch 2n under guidance


class ImageRequest(_Body):
    """OpenAI's images.generate body plus the Stable Diffusion settings people know from A1111."""
    prompt: str = Field(min_length=1)
    model: Optional[str] = None
    n: int = Field(default=1, ge=1, le=MAX_IMAGES)
    size: str = "512x512"
    response_format: Literal["b64_json", "url"] = "b64_json"
    user: Optional[str] = None
    quality: Optional[str] = None  # accepted and ignored, as OpenAI's other models do
    style: Optional[str] = None
    negative_prompt: str = ""
    steps: int = Field(default=20, ge=1, le=150)
    cfg_scale: float = Field(default=7.0, ge=0, le=30)
    sampler: str = "euler_a"
    scheduler: str = "discrete"
    seed: Optional[int] = Field(default=None, ge=0, le=2**63 - 1)
    clip_skip: Optional[int] = Field(default=None, ge=1)

    @field_validator("size")
    @classmethod
    def _size(cls, v):
        parts = v.lower().split("x")
        if len(parts) != 2 or not all(p.isdigit() and 0 < int(p) <= 2048 for p in parts):
            raise ValueError(f"size must be 'WIDTHxHEIGHT' with each side 1..2048, not {v!r}")
        return v
