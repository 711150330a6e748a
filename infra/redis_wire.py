"""The Redis wire protocol for our own clients: where a URL points, how to connect, how commands and replies look.

Two parts of roi speak RESP themselves instead of through redis-py, each for a reason given in its docstring: the
cache's batched reads (`infra.redis_batch`) and the event hub's subscription (`domain.events.hub`). Both read the
same `REDIS_URL` as redis-py, so a URL is understood here the way redis-py understands it: `redis://` (TCP),
`rediss://` (TLS, verified unless `ssl_cert_reqs=none`; `ssl_ca_certs`, `ssl_ca_path`, `ssl_certfile`,
`ssl_keyfile`, `ssl_check_hostname` as query parameters), `unix://` (a socket path); user and password from the
URL or its query; the database from `?db=` or the path.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TypeVar, cast
from urllib.parse import parse_qs, unquote, urlsplit

import hiredis
from redis.exceptions import ConnectionError as RedisConnectionError

DEFAULT_HOST = "localhost"
DEFAULT_PORT = 6379
CERT_REQUIREMENTS = {"none": ssl.CERT_NONE, "optional": ssl.CERT_OPTIONAL, "required": ssl.CERT_REQUIRED}
FALSE_WORDS = {"0", "f", "false", "n", "no"}


@dataclass(frozen=True)
class RedisAddress:
    """Where a Redis is and how to log in to it; `tls` is built once, when the URL is read."""

    host: str = DEFAULT_HOST
    port: int = DEFAULT_PORT
    unix_path: str | None = None
    username: str | None = None
    password: str | None = None
    db: int = 0
    tls: ssl.SSLContext | None = field(default=None, compare=False)

    @classmethod
    def from_url(cls, url: str) -> RedisAddress:
        """Read a redis://, rediss:// or unix:// URL; a TLS file that cannot be read fails here, at start-up."""
        parsed = urlsplit(url)
        scheme = parsed.scheme.lower()
        if scheme not in ("redis", "rediss", "unix"):
            raise ValueError(f"a Redis URL starts with redis://, rediss:// or unix://, not {scheme or url!r}")
        query = {name: values[0] for name, values in parse_qs(parsed.query).items() if values}
        username = unquote(parsed.username) if parsed.username else query.get("username")
        password = unquote(parsed.password) if parsed.password else query.get("password")
        path = unquote(parsed.path).replace("/", "") if scheme != "unix" else ""
        db = query.get("db", path if path.isdigit() else "0")  # a path that is no number is ignored, as redis-py does
        if not db.isdigit():
            raise ValueError(f"the database of a Redis URL is a number, not {db!r}")
        if scheme == "unix":
            return cls(unix_path=unquote(parsed.path), username=username, password=password, db=int(db))
        return cls(
            host=unquote(parsed.hostname) if parsed.hostname else DEFAULT_HOST,
            port=parsed.port or DEFAULT_PORT,
            username=username,
            password=password,
            db=int(db),
            tls=tls_context(query) if scheme == "rediss" else None,
        )

    def setup_commands(self, client_name: str | None = None) -> list[bytes]:
        """What a new connection sends before anything else: log in, choose the database, say who it is."""
        commands = []
        if self.password is not None:
            credentials = [self.username.encode()] if self.username else []
            commands.append(command(b"AUTH", *credentials, self.password.encode()))
        if self.db:
            commands.append(command(b"SELECT", str(self.db).encode()))
        if client_name:
            commands.append(command(b"CLIENT", b"SETNAME", client_name.encode()))
        return commands

    def __str__(self) -> str:
        if self.unix_path is not None:
            return f"unix://{self.unix_path}"
        return f"{'rediss' if self.tls else 'redis'}://{self.host}:{self.port}"


def tls_context(query: dict[str, str]) -> ssl.SSLContext:
    """The TLS context redis-py builds from the same query parameters (its `RedisSSLContext`)."""
    requirement = query.get("ssl_cert_reqs", "required").lower()
    if requirement not in CERT_REQUIREMENTS:
        raise ValueError(f"ssl_cert_reqs is one of none, optional, required, not {requirement!r}")
    verify_mode = CERT_REQUIREMENTS[requirement]
    context = ssl.create_default_context()
    context.check_hostname = (
        verify_mode != ssl.CERT_NONE and query.get("ssl_check_hostname", "true").lower() not in FALSE_WORDS
    )
    context.verify_mode = verify_mode
    if "ssl_certfile" in query:
        context.load_cert_chain(certfile=query["ssl_certfile"], keyfile=query.get("ssl_keyfile"))
    if "ssl_ca_certs" in query or "ssl_ca_path" in query:
        context.load_verify_locations(cafile=query.get("ssl_ca_certs"), capath=query.get("ssl_ca_path"))
    return context


def command(*parts: bytes) -> bytes:
    """One command in RESP, ready to write."""
    return b"*%d\r\n" % len(parts) + b"".join(b"$%d\r\n%s\r\n" % (len(part), part) for part in parts)


class RespConnection(asyncio.Protocol):
    """One connection: replies parsed by hiredis and handed to `reply_received` one by one, in order.

    Replies to the setup commands that `connect` sends first go to `connect` instead. A reply Redis refused
    arrives as an `Exception` instance (hiredis's `ReplyError`), not raised.
    """

    def __init__(self) -> None:
        self.reader = hiredis.Reader()
        self.transport: asyncio.Transport | None = None
        self.lost = False
        self._handle = self.reply_received
        self._setup: asyncio.Future[list[object]] | None = None
        self._setup_replies: list[object] = []
        self._setup_expected = 0

    def reply_received(self, reply: object) -> None:
        raise NotImplementedError

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's transports do not subclass asyncio's

    def data_received(self, data: bytes) -> None:
        self.reader.feed(data)
        while (reply := self.reader.gets()) is not False:
            self._handle(reply)

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        if self._setup is not None and not self._setup.done():
            self._setup.set_exception(RedisConnectionError(f"connection to Redis lost during setup: {exc}"))

    def write(self, data: bytes) -> None:
        assert self.transport is not None
        self.transport.write(data)

    async def run_setup(self, commands: list[bytes]) -> None:
        """Send `commands` at once and wait for all their replies; a refusal raises `ConnectionError`."""
        if not commands:
            return
        self._setup = asyncio.get_running_loop().create_future()
        self._setup_replies, self._setup_expected = [], len(commands)
        self._handle = self._setup_reply
        try:
            self.write(b"".join(commands))
            replies = await self._setup
        finally:
            self._handle = self.reply_received
            self._setup = None
        refusals = [reply for reply in replies if isinstance(reply, Exception)]
        if refusals:
            raise RedisConnectionError(f"Redis refused the connection setup: {refusals[0]}")

    def _setup_reply(self, reply: object) -> None:
        self._setup_replies.append(reply)
        if len(self._setup_replies) == self._setup_expected and self._setup is not None and not self._setup.done():
            self._setup.set_result(self._setup_replies)


Connection = TypeVar("Connection", bound=RespConnection)


async def connect(
    address: RedisAddress,
    connection_factory: Callable[[], Connection],
    timeout_s: float,
    client_name: str | None = None,
) -> Connection:
    """A connection set up and ready for commands within `timeout_s` (else `TimeoutError`).

    A connection that cannot be made or set up raises `redis.exceptions.ConnectionError` and is left closed.
    """
    loop = asyncio.get_running_loop()
    connection: Connection | None = None
    try:
        async with asyncio.timeout(timeout_s):
            try:
                if address.unix_path is not None:
                    _, connection = await loop.create_unix_connection(connection_factory, address.unix_path)
                else:
                    _, connection = await loop.create_connection(
                        connection_factory, address.host, address.port, ssl=address.tls
                    )
            except OSError as error:  # refused, unreachable, and TLS failures (ssl.SSLError)
                raise RedisConnectionError(f"cannot connect to Redis at {address}: {error}") from error
            await connection.run_setup(address.setup_commands(client_name))
        if connection.lost:  # between its last setup reply and now: the caller must not take it for open
            raise RedisConnectionError(f"connection to Redis at {address} lost during setup")
    except BaseException:
        if connection is not None and connection.transport is not None:
            connection.transport.abort()
        raise
    return connection
