"""The floor of the upload scenarios: what Granian and Litestar cost to stream a body to a file, and nothing else.

The same round trips as a tus upload (a POST that creates the file, PATCHes that append to it, a DELETE that
removes it) without auth, database, Redis, offsets or events, so the service's throughput as a share of this one's
is what the service keeps of the server stack's. `/ready` is what the bench's `granian_server` waits for. Files go
to UPLOAD_FLOOR_DIR (set by the bench; a fresh temporary folder otherwise), shared by the Granian workers so that
any of them may take any request.
"""

from __future__ import annotations

import os
import re
import tempfile
from pathlib import Path
from typing import Any

from litestar import Litestar, Request, delete, get, patch, post
from litestar.exceptions import NotFoundException
from litestar.status_codes import HTTP_201_CREATED, HTTP_204_NO_CONTENT

MAX_BODY_BYTES = 64 << 20
"""Above the scenarios' largest chunk (5 MiB); Litestar's default limit is 10 MB."""
NAME = re.compile(r"[A-Za-z0-9_-]{1,64}")


def _path(directory: Path, name: str) -> Path:
    """Only plain names: a path never comes from the client."""
    if not NAME.fullmatch(name):
        raise NotFoundException("no such upload")
    return directory / name


def create_floor_app() -> Litestar:
    """The Granian factory of the floor: one folder for the files, the upload handlers and `/ready`."""
    directory = Path(os.environ.get("UPLOAD_FLOOR_DIR") or tempfile.mkdtemp(prefix="roi-upload-floor-"))
    directory.mkdir(parents=True, exist_ok=True)

    @post("/upload/{name:str}", status_code=HTTP_201_CREATED)
    async def create(name: str) -> None:
        _path(directory, name).write_bytes(b"")

    @patch("/upload/{name:str}", status_code=HTTP_204_NO_CONTENT)
    async def append(name: str, request: Request[Any, Any, Any]) -> None:
        # Written on the loop to the page cache, as the service's LocalStorage does.
        try:
            fd = os.open(_path(directory, name), os.O_WRONLY | os.O_APPEND)
        except FileNotFoundError:
            raise NotFoundException("no such upload") from None
        try:
            async for chunk in request.stream():
                view = memoryview(chunk)
                while view:
                    view = view[os.write(fd, view) :]
        finally:
            os.close(fd)

    @delete("/upload/{name:str}", status_code=HTTP_204_NO_CONTENT)
    async def remove(name: str) -> None:
        _path(directory, name).unlink(missing_ok=True)

    @get("/ready")
    async def ready() -> dict[str, str]:
        return {"status": "ready"}

    return Litestar([create, append, remove, ready], request_max_body_size=MAX_BODY_BYTES, logging_config=None)
