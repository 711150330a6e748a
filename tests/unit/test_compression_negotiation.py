"""Choosing a content coding from Accept-Encoding: q-values decide, brotli wins ties, q=0 forbids."""

from __future__ import annotations

import pytest

from app.compression import choose_coding

AVAILABLE = ("br", "gzip")


@pytest.mark.parametrize(
    ("accept_encoding", "expected"),
    [
        ("gzip, deflate, br", "br"),
        ("gzip", "gzip"),
        ("br;q=0, gzip", "gzip"),
        ("br;q=0.5, gzip;q=0.8", "gzip"),
        ("BR;Q=0.9 , gzip ; q=0.1", "br"),
        ("identity", None),
        ("gzip;q=0, br;q=0", None),
        ("*", "br"),
        ("*;q=0.5, br;q=0", "gzip"),
        ("deflate", None),
        ("gzip;q=banana, br;q=0", None),
    ],
)
def test_choose_coding(accept_encoding: str, expected: str | None) -> None:
    assert choose_coding(accept_encoding, AVAILABLE) == expected


def test_without_the_gzip_fallback_only_the_backend_is_offered() -> None:
    assert choose_coding("gzip", ("br",)) is None
