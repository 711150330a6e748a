"""The tus 1.0.0 protocol's headers, parsed strictly: each malformed one is a 400 naming it.

https://tus.io/protocols/resumable-upload — core plus creation, creation-with-upload, termination,
checksum and expiration.
"""

from __future__ import annotations

import base64
import binascii
import datetime
import hashlib
import unicodedata
from dataclasses import dataclass
from email.utils import format_datetime

from domain.errors import DomainError, InvalidInput, PayloadTooLarge

VERSION = "1.0.0"
EXTENSIONS = "creation,creation-with-upload,termination,checksum,expiration"
CHECKSUM_ALGORITHMS = ("sha1", "sha256", "md5")
OFFSET_CONTENT_TYPE = "application/offset+octet-stream"
MAX_METADATA_LENGTH = 4096
MAX_NAME_LENGTH = 255
MAX_SIZE_OR_OFFSET = 2**63 - 1
"""The largest size or offset an upload can have: uploads keep theirs as PostgreSQL bigints."""


class UnsupportedVersion(DomainError):
    status_code = 412


class ChecksumMismatch(DomainError):
    status_code = 460


def check_version(value: str | None) -> None:
    if value != VERSION:
        raise UnsupportedVersion(f"Tus-Resumable: this server speaks tus {VERSION}")


def non_negative_int(header: str, value: str | None) -> int:
    """A size or offset, refused past MAX_SIZE_OR_OFFSET as a 400 naming the header: further on, Python's int()
    rejects thousands of digits and PostgreSQL a bigint overflow, both as server errors."""
    if value is None:
        raise InvalidInput(f"{header}: the header is required")
    if not value.isascii() or not value.isdigit():
        raise InvalidInput(f"{header}: must be a non-negative integer, got {value[:40]!r}")
    digits = value.lstrip("0") or "0"
    if len(digits) > len(str(MAX_SIZE_OR_OFFSET)) or int(digits) > MAX_SIZE_OR_OFFSET:
        raise InvalidInput(f"{header}: at most {MAX_SIZE_OR_OFFSET}, got {value[:40]!r}")
    return int(digits)


def upload_length(value: str | None, max_size: int) -> int:
    """`Upload-Length`: over `max_size` is 413, as tus asks, however many digits it has."""
    if value is None:
        raise InvalidInput("Upload-Length: the header is required")
    if not value.isascii() or not value.isdigit():
        raise InvalidInput(f"Upload-Length: must be a non-negative integer, got {value[:40]!r}")
    digits = value.lstrip("0") or "0"
    if len(digits) > len(str(max_size)) or int(digits) > max_size:
        raise PayloadTooLarge(f"Upload-Length: {digits[:40]} bytes is over Tus-Max-Size ({max_size} bytes)")
    return int(digits)


def optional_length(value: str | None) -> int | None:
    return None if value is None else non_negative_int("Content-Length", value)


def parse_metadata(value: str | None) -> dict[str, str]:
    """`key base64value,key2,...`: keys unique ASCII without spaces or commas, values base64 (possibly absent).

    Values are decoded as UTF-8 text for display only; they never name a file or a path.
    """
    if not value:
        return {}
    if len(value) > MAX_METADATA_LENGTH:
        raise InvalidInput(f"Upload-Metadata: at most {MAX_METADATA_LENGTH} characters")
    pairs: dict[str, str] = {}
    for item in value.split(","):
        key, _, encoded = item.strip().partition(" ")
        if not key or not key.isascii() or " " in encoded.strip() or key in pairs:
            raise InvalidInput(f"Upload-Metadata: {item.strip()[:40]!r} is not a unique `key base64value` pair")
        try:
            pairs[key] = base64.b64decode(encoded.strip(), validate=True).decode() if encoded.strip() else ""
        except (binascii.Error, UnicodeDecodeError):
            raise InvalidInput(f"Upload-Metadata: the value of {key!r} is not base64 of UTF-8 text") from None
    return pairs


def display_name(value: str | None) -> str | None:
    """A client's file name or type as harmless text: control characters dropped, length bounded."""
    if value is None:
        return None
    shown = "".join(ch for ch in value if unicodedata.category(ch)[0] != "C").strip()
    return shown[:MAX_NAME_LENGTH] or None


@dataclass(frozen=True)
class Checksum:
    algorithm: str
    digest: bytes

    def hasher(self) -> hashlib._Hash:
        return hashlib.new(self.algorithm)


def parse_checksum(value: str | None) -> Checksum | None:
    if value is None:
        return None
    algorithm, _, encoded = value.strip().partition(" ")
    if algorithm not in CHECKSUM_ALGORITHMS:
        raise InvalidInput(
            f"Upload-Checksum: algorithm {algorithm[:20]!r} is not one of {', '.join(CHECKSUM_ALGORITHMS)}"
        )
    try:
        digest = base64.b64decode(encoded.strip(), validate=True)
    except binascii.Error:
        raise InvalidInput("Upload-Checksum: the checksum is not base64") from None
    if len(digest) != hashlib.new(algorithm).digest_size:
        raise InvalidInput(f"Upload-Checksum: a {algorithm} checksum has {hashlib.new(algorithm).digest_size} bytes")
    return Checksum(algorithm, digest)


def http_date(moment: datetime.datetime) -> str:
    """RFC 9110's date format, as `Upload-Expires` requires."""
    return format_datetime(moment.astimezone(datetime.UTC), usegmt=True)
