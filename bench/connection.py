"""A bare HTTP/1.1 keep-alive client for large bodies: the upload rows measure the service, not a client's copies."""

from __future__ import annotations

import asyncio

import msgspec

from testkit.granian import Server

ANSWER_TIMEOUT_S = 30.0


class Answer(msgspec.Struct, frozen=True):
    status: int
    headers: dict[str, str]
    body: bytes


class UploadFailed(Exception):
    """One upload answered other than the protocol says; counted as an error of its row."""


class Connection:
    """One HTTP/1.1 keep-alive connection: a request written as its head and the body's memoryview, no copies;
    the answer read by Content-Length (every answer here has one)."""

    def __init__(self, server: Server) -> None:
        self.server = server
        self.streams: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None

    async def request(self, method: str, path: str, headers: dict[str, str], body: memoryview | None = None) -> Answer:
        fields = {"Host": self.server.address, **headers, "Content-Length": str(len(body) if body else 0)}
        head = f"{method} {path} HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in fields.items()) + "\r\n"
        try:
            if self.streams is None:
                self.streams = await asyncio.open_connection(self.server.host, self.server.port)
            reader, writer = self.streams
            writer.write(head.encode())
            if body:
                writer.write(body)
            await writer.drain()
            answer = await asyncio.wait_for(self._answer(reader, method == "HEAD"), ANSWER_TIMEOUT_S)
        except (OSError, TimeoutError, asyncio.IncompleteReadError) as error:
            self.close()
            raise UploadFailed(f"{method} {path}: {error!r}") from error
        if answer.headers.get("connection", "").lower() == "close":
            self.close()
        return answer

    @staticmethod
    async def _answer(reader: asyncio.StreamReader, is_head: bool) -> Answer:
        """The answer's head, and its body unless it answers a HEAD (whose Content-Length is the GET's)."""
        status_line, *lines = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1").split("\r\n")
        headers = {}
        for line in lines:
            if line:
                name, value = line.split(":", 1)
                headers[name.strip().lower()] = value.strip()
        length = int(headers.get("content-length", "0"))
        body = await reader.readexactly(length) if length and not is_head else b""
        return Answer(int(status_line.split()[1]), headers, body)

    def close(self) -> None:
        if self.streams is not None:
            self.streams[1].close()
            self.streams = None
