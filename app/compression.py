"""Response compression: brotli, else gzip, chosen by the client's q-values, above a minimum size; a body that
the app hands out again and again (a cached page) is compressed once per coding, not once per request."""

from __future__ import annotations

from collections import OrderedDict
from functools import lru_cache
from io import BytesIO

from litestar.config.compression import CompressionConfig
from litestar.enums import CompressionEncoding
from litestar.middleware.base import DefineMiddleware
from litestar.middleware.compression import CompressionMiddleware
from litestar.middleware.compression.facade import CompressionFacade
from litestar.middleware.compression.gzip_facade import GzipCompression
from litestar.types import ASGIApp, HTTPResponseBodyEvent, HTTPResponseStartEvent, Message, Receive, Scope, Send

MINIMUM_SIZE = 1024
"""Smaller JSON bodies gain a few hundred bytes at most, not worth the CPU."""

COMPRESSED_COPIES_MAX_BYTES = 32 << 20

_VARY = b"vary"
_CONTENT_LENGTH = b"content-length"
_CONTENT_ENCODING = b"content-encoding"


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


class CompressedCopies:
    """Compressed bodies remembered by the identity of the bytes object they were made from, least recently used
    dropped first once `max_bytes` (sources and results) is passed.

    Why identity: the cache's local copies (domain/cache.py) hand out the same object on every hit for as long as
    it is current, so a hot 58 KB page costs one brotli pass per change instead of ~1.3 ms per request, and no
    hash of the body is needed. Each entry holds its source, so its id cannot be reused while it is remembered.
    """

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self.size = 0
        self._entries: OrderedDict[tuple[int, str], tuple[bytes, bytes]] = OrderedDict()

    def get(self, body: bytes, coding: str) -> bytes | None:
        entry = self._entries.get((id(body), coding))
        if entry is None or entry[0] is not body:
            return None
        self._entries.move_to_end((id(body), coding))
        return entry[1]

    def put(self, body: bytes, coding: str, compressed: bytes) -> None:
        previous = self._entries.pop((id(body), coding), None)
        if previous is not None:
            self.size -= len(previous[0]) + len(previous[1])
        self._entries[(id(body), coding)] = (body, compressed)
        self.size += len(body) + len(compressed)
        while self.size > self.max_bytes and self._entries:
            _, (source, dropped) = self._entries.popitem(last=False)
            self.size -= len(source) + len(dropped)


class NegotiatedCompressionMiddleware(CompressionMiddleware):
    """Litestar's compression with the coding negotiated properly, `Vary` on every response, no compressor built
    for a body too small to compress (a brotli compressor costs more than serving /health), and a whole body
    compressed at most once per coding while the app keeps handing out that same object.
    """

    def __init__(self, app: ASGIApp, config: CompressionConfig) -> None:
        super().__init__(app, config)
        fallback = ("gzip",) if config.gzip_fallback else ()
        self.available = (CompressionEncoding(config.compression_facade.encoding).value, *fallback)
        self.copies = CompressedCopies(COMPRESSED_COPIES_MAX_BYTES)

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
            elif message["type"] == "http.response.start" and _encoded_already(message):
                compressing = send  # a file stored compressed (the queue UI's .gz assets) goes out as it is
                _vary_on_accept_encoding(message)
                await send(message)
            elif message["type"] == "http.response.start":
                start = message  # held until the body shows whether it is worth compressing
            elif start is None:
                await send(message)
            elif message["type"] == "http.response.body" and not message.get("more_body", False):
                body = message.get("body", b"")
                if len(body) < self.config.minimum_size:
                    _vary_on_accept_encoding(start)
                    await send(start)
                    await send(message)
                else:
                    await self._send_whole_compressed(send, start, body, coding)
            else:  # a streamed body: Litestar's compressor, which adds `Vary` itself
                compressing = self.create_compression_send_wrapper(send=send, compression_encoding=coding, scope=scope)
                await compressing(start)
                await compressing(message)

        return send_compressed_when_large

    async def _send_whole_compressed(self, send: Send, start: HTTPResponseStartEvent, body: bytes, coding: str) -> None:
        compressed = self.copies.get(body, coding)
        if compressed is None:
            compressed = self._compress(body, coding)
            self.copies.put(body, coding, compressed)
        headers = [(name, value) for name, value in start.get("headers", []) if name.lower() != _CONTENT_LENGTH]
        headers += [(b"content-encoding", coding.encode()), (_CONTENT_LENGTH, str(len(compressed)).encode())]
        start["headers"] = headers
        _vary_on_accept_encoding(start)
        await send(start)
        await send(HTTPResponseBodyEvent(type="http.response.body", body=compressed, more_body=False))

    def _compress(self, body: bytes, coding: str) -> bytes:
        """One whole body through the same facade (and settings) Litestar's streaming path uses."""
        buffer = BytesIO()
        facade_type: type[CompressionFacade] = (
            GzipCompression if coding == CompressionEncoding.GZIP else self.config.compression_facade
        )
        facade = facade_type(buffer=buffer, compression_encoding=coding, config=self.config)
        facade.write(body)
        facade.close()
        return buffer.getvalue()


def _encoded_already(start: HTTPResponseStartEvent) -> bool:
    return any(name.lower() == _CONTENT_ENCODING for name, _ in start.get("headers", []))


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
