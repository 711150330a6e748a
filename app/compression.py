"""Response compression: brotli, else gzip, chosen by the client's q-values, above a minimum size."""

from __future__ import annotations

from functools import lru_cache

from litestar.config.compression import CompressionConfig
from litestar.enums import CompressionEncoding
from litestar.middleware.base import DefineMiddleware
from litestar.middleware.compression import CompressionMiddleware
from litestar.types import ASGIApp, HTTPResponseStartEvent, Message, Receive, Scope, Send

MINIMUM_SIZE = 1024
"""Smaller JSON bodies gain a few hundred bytes at most, not worth the CPU."""

_VARY = b"vary"


@lru_cache(maxsize=256)
def choose_coding(accept_encoding: str, available: tuple[str, ...]) -> str | None:
    """The acceptable coding with the highest q-value, ties going to the first of `available`; None for identity.

    Litestar's own middleware only tests for a substring, so `br;q=0` still got brotli.
    """
    weights: dict[str, float] = {}
    for part in accept_encoding.lower().split(","):
        coding, _, parameters = part.partition(";")
        weight = 1.0
        name, _, value = parameters.strip().partition("=")
        if name.strip() == "q":
            try:
                weight = float(value)
            except ValueError:
                weight = 0.0
        weights[coding.strip()] = weight
    best, best_weight = None, 0.0
    for coding in available:
        weight = weights.get(coding, weights.get("*", 0.0))
        if weight > best_weight:
            best, best_weight = coding, weight
    return best


def _vary_on_accept_encoding(start: HTTPResponseStartEvent) -> None:
    """Every response here varies by Accept-Encoding, also those sent uncompressed (too small, or identity asked)."""
    headers = list(start.get("headers", []))
    if not any(name.lower() == _VARY and b"accept-encoding" in value.lower() for name, value in headers):
        headers.append((_VARY, b"Accept-Encoding"))
        start["headers"] = headers


class NegotiatedCompressionMiddleware(CompressionMiddleware):
    """Litestar's compression with the coding negotiated properly, `Vary` on every response, and no compressor
    built for a body too small to compress (a brotli compressor costs more than serving /health).
    """

    def __init__(self, app: ASGIApp, config: CompressionConfig) -> None:
        super().__init__(app, config)
        fallback = ("gzip",) if config.gzip_fallback else ()
        self.available = (CompressionEncoding(config.compression_facade.encoding).value, *fallback)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        accept_encoding = next((v for k, v in scope["headers"] if k == b"accept-encoding"), b"").decode("latin-1")
        coding = choose_coding(accept_encoding, self.available) if accept_encoding else None
        if coding is None:
            await self.app(scope, receive, _uncompressed(send))
        else:
            await self.app(scope, receive, self._compressed_when_large(send, coding, scope))

    def _compressed_when_large(self, send: Send, coding: str, scope: Scope) -> Send:
        start: HTTPResponseStartEvent | None = None
        compressing: Send | None = None

        async def send_compressed_when_large(message: Message) -> None:
            nonlocal start, compressing
            if compressing is not None:
                await compressing(message)
            elif message["type"] == "http.response.start":
                start = message  # held until the body shows whether it is worth compressing
            elif start is None:
                await send(message)
            elif (
                message["type"] == "http.response.body"
                and not message.get("more_body", False)
                and len(message.get("body", b"")) < self.config.minimum_size
            ):
                _vary_on_accept_encoding(start)
                await send(start)
                await send(message)
            else:  # Litestar's compressor, which adds `Vary` itself
                compressing = self.create_compression_send_wrapper(send=send, compression_encoding=coding, scope=scope)
                await compressing(start)
                await compressing(message)

        return send_compressed_when_large


def _uncompressed(send: Send) -> Send:
    async def send_uncompressed(message: Message) -> None:
        if message["type"] == "http.response.start":
            _vary_on_accept_encoding(message)
        await send(message)

    return send_uncompressed


def compression_middleware() -> DefineMiddleware:
    """Route middleware rather than `compression_config`, so that it wraps the ETag middleware listed after it:
    ETags then name the content, the same for every coding (gzip output embeds a timestamp).
    """
    config = CompressionConfig(
        backend="brotli",
        brotli_gzip_fallback=True,
        minimum_size=MINIMUM_SIZE,
        gzip_compress_level=6,
    )
    return DefineMiddleware(NegotiatedCompressionMiddleware, config=config)
