"""REDIS_URL with rediss:// (TLS) or unix://: the cache's hit path and the live-events hub work over both.

Against a real Redis speaking TLS (Debian's redis-server) with a throw-away CA, and listening on a unix socket too;
it asks for a password, and the URLs name database 2, so the login and the database choice are exercised as well.
"""

from __future__ import annotations

import asyncio
import datetime
import ipaddress
import shutil
import socket
import ssl
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError

from domain.cache import Cache, Entry
from domain.events.bus import EventBus, EventKeys
from domain.events.hub import EventHub
from infra.redis import create_cache_redis
from infra.redis_batch import PipelinedGet
from tests.integration.redis_support import OwnRedis

REDIS_SERVER = shutil.which("redis-server")
PASSWORD = "tls test p@ss"
DB = 2

pytestmark = pytest.mark.skipif(
    REDIS_SERVER is None, reason="needs redis-server (Debian: apt-get install redis-server)"
)


def write_key(path: Path, key: ec.EllipticCurvePrivateKey) -> None:
    path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )


def make_certificates(directory: Path) -> tuple[Path, Path, Path]:
    """A CA and a server certificate it signed, for 127.0.0.1 and localhost: (CA cert, server cert, server key)."""
    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "roi test CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    server_key = ec.generate_private_key(ec.SECP256R1())
    server = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]))
        .issuer_name(ca_name)
        .public_key(server_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    ca_file, cert_file, key_file = directory / "ca.pem", directory / "server.pem", directory / "server-key.pem"
    ca_file.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    cert_file.write_bytes(server.public_bytes(serialization.Encoding.PEM))
    write_key(key_file, server_key)
    return ca_file, cert_file, key_file


class TlsAndUnixRedis(OwnRedis):
    """redis-server with no plain TCP port: TLS on `port` (clients need no certificate), and a unix socket."""

    def __init__(self, directory: Path) -> None:
        super().__init__(directory)
        self.ca_file, self.cert_file, self.key_file = make_certificates(directory)
        self.socket_path = directory / "redis.sock"

    def command(self) -> list[str]:
        assert REDIS_SERVER is not None
        return [
            REDIS_SERVER,
            "--port",
            "0",
            "--tls-port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--tls-cert-file",
            str(self.cert_file),
            "--tls-key-file",
            str(self.key_file),
            "--tls-ca-cert-file",
            str(self.ca_file),
            "--tls-auth-clients",
            "no",
            "--unixsocket",
            str(self.socket_path),
            "--unixsocketperm",
            "700",
            "--requirepass",
            PASSWORD,
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(self.directory),
        ]

    def answers(self) -> bool:
        """Answers over TLS: a TLS handshake and a PING (refused for want of a password, but answered)."""
        context = ssl.create_default_context(cafile=str(self.ca_file))
        try:
            with (
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2) as raw,
                context.wrap_socket(raw, server_hostname="127.0.0.1") as conn,
            ):
                conn.sendall(b"PING\r\n")
                return conn.recv(16).startswith(b"-NOAUTH")
        except OSError:
            return False

    @property
    def tls_url(self) -> str:
        return f"rediss://:{quote(PASSWORD)}@127.0.0.1:{self.port}/{DB}?ssl_ca_certs={quote(str(self.ca_file))}"

    @property
    def unix_url(self) -> str:
        return f"unix://default:{quote(PASSWORD)}@{quote(str(self.socket_path))}?db={DB}"


@pytest.fixture(scope="module")
def tls_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TlsAndUnixRedis]:
    server = TlsAndUnixRedis(tmp_path_factory.mktemp("tls-redis"))
    server.start()
    try:
        yield server
    finally:
        server.kill()


@pytest.fixture(params=["rediss", "unix"])
def url(request: pytest.FixtureRequest, tls_redis: TlsAndUnixRedis) -> str:
    return tls_redis.tls_url if request.param == "rediss" else tls_redis.unix_url


async def test_rediss_verifies_the_server_unless_ssl_cert_reqs_is_none_as_for_redis_py(
    tls_redis: TlsAndUnixRedis,
) -> None:
    """Without our CA the server's certificate is unknown: both clients refuse it, and both accept it when told
    not to verify."""
    address = f"rediss://:{quote(PASSWORD)}@127.0.0.1:{tls_redis.port}/{DB}"
    for url, verified in ((address, False), (f"{address}?ssl_cert_reqs=none", True)):
        ours = PipelinedGet(url, timeout_s=1.0)
        theirs = Redis.from_url(url, socket_timeout=1.0)
        try:
            if verified:
                assert await ours.get("absent") is None
                assert await theirs.get("absent") is None
            else:
                with pytest.raises(RedisConnectionError, match="CERTIFICATE_VERIFY_FAILED"):
                    await ours.get("absent")
                with pytest.raises(RedisConnectionError, match="CERTIFICATE_VERIFY_FAILED"):
                    await theirs.get("absent")
        finally:
            ours.close()
            await theirs.aclose()


async def test_cached_values_written_with_redis_py_are_read_through_the_batched_hit_path(url: str) -> None:
    namespace = f"tls-{uuid.uuid4().hex[:8]}"
    outcomes: list[tuple[str, str]] = []
    redis = create_cache_redis(url, max_connections=4, timeout_s=1.0)
    fast_get = PipelinedGet(url, timeout_s=1.0)
    cache = Cache(
        redis, namespace, record=lambda family, outcome: outcomes.append((family, outcome)), fast_get=fast_get
    )

    async def from_postgres() -> bytes:
        raise AssertionError("the cache fell back instead of reading Redis")

    try:
        await redis.set(f"{namespace}:status", b'{"status":"running"}')
        await redis.hset(f"{namespace}:pages", "page:1", b'{"items":[]}')
        plain = Entry(family="status", key=f"{namespace}:status", ttl_s=60)
        field = Entry(family="pages", key=f"{namespace}:pages", field="page:1", ttl_s=60)
        answers = await asyncio.gather(
            cache.read_through(plain, from_postgres), cache.read_through(field, from_postgres)
        )
        assert answers == [b'{"status":"running"}', b'{"items":[]}']
        assert sorted(outcomes) == [("pages", "hit"), ("status", "hit")]
        batched = [client for client in await redis.client_list() if client["cmd"] in ("get", "hget")]
        assert [client["db"] for client in batched] == [str(DB)], "one connection, on the URL's database"
        assert cache.available
    finally:
        fast_get.close()
        await redis.delete(f"{namespace}:status", f"{namespace}:pages")
        await redis.aclose()


class Received:
    def __init__(self) -> None:
        self.frames: list[tuple[int, str]] = []
        self.arrived = asyncio.Event()

    def deliver(self, seq: int, frame: str, published_at: float) -> None:
        self.frames.append((seq, frame))
        self.arrived.set()

    def hub_lost(self) -> None:
        raise AssertionError("the hub lost its connection")


async def test_the_event_hub_subscribes_and_delivers_a_published_event(url: str) -> None:
    namespace = f"tls-{uuid.uuid4().hex[:8]}"
    hub = EventHub(url, EventKeys(namespace))
    redis = Redis.from_url(url)
    listener = Received()
    await hub.start()
    try:
        await asyncio.wait_for(hub.join("workflow:1", listener), 5)
        names = [client["name"] for client in await redis.client_list()]
        assert hub.client_name in names, "the hub's connection logged in and named itself"

        seq = await EventBus(redis, namespace).publish("workflow:1", "workflow.status", {"status": "running"})
        await asyncio.wait_for(listener.arrived.wait(), 5)
        [(delivered_seq, frame)] = listener.frames
        assert delivered_seq == seq
        assert '"event":"workflow.status"' in frame
        assert '"data":{"status":"running"}' in frame
    finally:
        await hub.close()
        await redis.aclose()
