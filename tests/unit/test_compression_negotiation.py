"""Content codings: chosen by Accept-Encoding q-values (brotli wins ties, q=0 forbids), compressed bodies remembered."""

from __future__ import annotations

import pytest

from app.compression import CompressedCopies, choose_coding

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


def test_compressed_copies_answer_only_for_the_very_body_they_were_made_from() -> None:
    copies = CompressedCopies(max_bytes=1000)
    page = b"x" * 300
    copies.put(page, "br", b"compressed page")
    assert copies.get(page, "br") == b"compressed page"
    assert copies.get(page, "gzip") is None, "each coding is its own entry"
    assert copies.get(bytes(bytearray(page)), "br") is None, "equal content in another object is not trusted"


def test_compressed_copies_stay_within_their_memory_bound() -> None:
    copies = CompressedCopies(max_bytes=1000)
    pages = [bytes([n]) * 300 for n in range(4)]
    for page in pages:
        copies.put(page, "br", b"c" * 100)
    assert copies.size <= 1000
    assert copies.get(pages[0], "br") is None, "the least recently used went first"
    assert copies.get(pages[3], "br") == b"c" * 100
