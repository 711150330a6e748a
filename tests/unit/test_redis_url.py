"""One REDIS_URL, one meaning: our wire reads a URL the way redis-py does."""

from __future__ import annotations

import ssl

import pytest
from redis.asyncio.connection import SSLConnection, parse_url

from infra.redis_wire import RedisAddress

SAME_MEANING = [
    "redis://127.0.0.1:6380/2",
    "redis://cache.internal",
    "redis://:s3cret@127.0.0.1:6379",
    "redis://roi:p%40ss@127.0.0.1:6379/1",
    "redis://127.0.0.1:6379/1?db=4",
    "redis://127.0.0.1:6379/not-a-number",
    "redis://127.0.0.1:6379?password=fromquery&username=ops",
    "rediss://redis.example.com:6390/0?ssl_cert_reqs=none",
    "unix:///run/redis/redis.sock?db=3",
    "unix://ops:pw@/var/run/redis%20dir/redis.sock",
]


@pytest.mark.parametrize("url", SAME_MEANING)
def test_a_url_names_the_same_server_login_and_database_as_for_redis_py(url: str) -> None:
    theirs = parse_url(url)
    ours = RedisAddress.from_url(url)
    if url.startswith("unix://"):
        assert ours.unix_path == theirs["path"]
    else:
        assert (ours.host, ours.port) == (theirs.get("host", "localhost"), theirs.get("port", 6379))
    assert ours.username == theirs.get("username")
    assert ours.password == theirs.get("password")
    assert ours.db == theirs.get("db", 0)
    assert (ours.tls is not None) == (theirs.get("connection_class") is SSLConnection)


def test_rediss_verifies_the_server_unless_told_not_to() -> None:
    verified = RedisAddress.from_url("rediss://redis.example.com:6390")
    assert verified.tls is not None
    assert verified.tls.verify_mode == ssl.CERT_REQUIRED
    assert verified.tls.check_hostname

    unverified = RedisAddress.from_url("rediss://redis.example.com:6390?ssl_cert_reqs=none")
    assert unverified.tls is not None
    assert unverified.tls.verify_mode == ssl.CERT_NONE
    assert not unverified.tls.check_hostname

    no_hostname = RedisAddress.from_url("rediss://10.0.0.5?ssl_check_hostname=false")
    assert no_hostname.tls is not None
    assert no_hostname.tls.verify_mode == ssl.CERT_REQUIRED
    assert not no_hostname.tls.check_hostname


def test_a_missing_ca_file_fails_when_the_url_is_read() -> None:
    with pytest.raises(FileNotFoundError):
        RedisAddress.from_url("rediss://redis.example.com?ssl_ca_certs=/nonexistent/ca.pem")


@pytest.mark.parametrize(
    "url", ["http://127.0.0.1:6379", "redis://127.0.0.1:6379?db=first", "rediss://h?ssl_cert_reqs=sometimes"]
)
def test_a_url_that_redis_py_would_not_take_is_refused(url: str) -> None:
    with pytest.raises(ValueError, match=r"Redis URL|database|ssl_cert_reqs"):
        RedisAddress.from_url(url)
