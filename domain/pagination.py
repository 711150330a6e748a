"""Keyset pagination: opaque cursors naming the last row of a page, signed so that they cannot be forged.

A page continues strictly after the `(created_at, id)` of the previous page's last row, newest first, so every page is
one index range scan whatever its depth, and rows created meanwhile neither repeat nor push others off a page. A cursor
is bound to its owner and to the list's filter by an HMAC: a tampered cursor, another user's, or one made for another
filter is refused with a 400, never answered with someone else's rows.
"""

from __future__ import annotations

import base64
import binascii
import datetime
import hashlib
import hmac
import struct
import uuid
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple, Protocol

import msgspec

from db.pools import written_spaced
from domain.errors import InvalidInput

EPOCH = datetime.datetime(1970, 1, 1, tzinfo=datetime.UTC)
_POSITION = struct.Struct(">q16s")
_MAC_BYTES = 16
MAX_OFFSET = 10_000
"""Deeper than this, `offset` is refused in favour of `cursor`: an offset costs a scan of every row it skips."""


class Position(NamedTuple):
    """Where a page ends: its last row's creation time and id (the tie-breaker)."""

    created_at: datetime.datetime
    id: uuid.UUID


class CursorSigner:
    """Makes and checks cursors with a key derived from the service's secret (one per process)."""

    def __init__(self, secret_key: str) -> None:
        self._key = hashlib.sha256(b"roi page cursor\0" + secret_key.encode()).digest()

    def encode(self, owner_id: uuid.UUID, scope: str, position: Position) -> str:
        """`scope` names the list and its filter (`workflows:running`): it continues only the list it came from."""
        micros = (position.created_at - EPOCH) // datetime.timedelta(microseconds=1)
        body = _POSITION.pack(micros, position.id.bytes)
        return base64.urlsafe_b64encode(body + self._mac(owner_id, scope, body)).rstrip(b"=").decode()

    def decode(self, owner_id: uuid.UUID, scope: str, cursor: str) -> Position:
        """The position a cursor names; `InvalidInput` for anything not made by `encode` for this owner and scope."""
        try:
            raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        except (binascii.Error, ValueError):
            raw = b""
        body, mac = raw[: _POSITION.size], raw[_POSITION.size :]
        if len(body) != _POSITION.size or not hmac.compare_digest(mac, self._mac(owner_id, scope, body)):
            raise InvalidInput("cursor: not a cursor of this list; use the next_cursor of a page of it")
        micros, row_id = _POSITION.unpack(body)
        return Position(EPOCH + datetime.timedelta(microseconds=micros), uuid.UUID(bytes=row_id))

    def _mac(self, owner_id: uuid.UUID, scope: str, body: bytes) -> bytes:
        message = owner_id.bytes + scope.encode() + b"\0" + body
        return hmac.new(self._key, message, hashlib.sha256).digest()[:_MAC_BYTES]


def check_page_request(offset: int, cursor: str | None) -> None:
    """`offset` and `cursor` are two ways to say where a page starts: one at a time, and `offset` only while cheap."""
    if cursor is not None and offset:
        raise InvalidInput("cursor: give a cursor or an offset, not both")
    if offset > MAX_OFFSET:
        raise InvalidInput(f"offset: at most {MAX_OFFSET:,}; page deeper with cursor (each page's next_cursor)")


class PageRow(Protocol):
    """A row of a page statement: `total`, then `item` (an item's JSON as UTF-8 bytes, NULL in the one row of an
    empty page)."""

    def __getitem__(self, index: int) -> Any: ...


class _ItemPosition(msgspec.Struct):
    """What a cursor needs of an item: every item's JSON carries its `id` and `created_at` (`roi_timestamp`, to the
    microsecond, so the position read back is the row's own)."""

    id: uuid.UUID
    created_at: datetime.datetime


_read_position = msgspec.json.Decoder(_ItemPosition).decode


def page_statement(total: str, items: str) -> str:
    """One statement for a page: `total` a single-row count read, `items` the rows' query, newest first, ending in
    `LIMIT $2 OFFSET $3` over the column `item` (a JSON object with the item's `id` and `created_at`), where $2 is
    the page's size plus one, to tell whether another page follows. It answers a row per item, each with the total,
    newest first (the lateral join keeps the order the LIMIT hands them over), or one row without an item when the
    page is empty. The cursor's position is read from the last item's own JSON: numbering the rows to send it as
    columns with that item alone cost PostgreSQL ~20 µs a page, and decoding it from every row cost the worker more.

    Why rows, not one JSON array joined by `json_agg`: PostgreSQL builds a 70 kB aggregate in freshly allocated
    memory that the kernel must fault in and zero on every call. Measured on a 50-item page of workflows, the array
    cost ~200 µs more PostgreSQL CPU than the same items as rows. Each item comes as its UTF-8 bytes (`bytea`), not
    as `json`: asyncpg hands bytes over in C, where a `json` value calls the pool's Python decoder once per row
    (~130 µs a page)."""
    return f"""
SELECT t.total, convert_to(i.item::text, 'UTF8') AS item FROM ({total}) t LEFT JOIN LATERAL ({items}) i ON true"""


def render_page(rows: Sequence[PageRow], limit: int, offset: int, next_cursor: Callable[[Position], str]) -> bytes:
    """The page's JSON around its items as PostgreSQL wrote them (compacted, as one, when any item was written with
    `json_build_object`'s spacing):
    `{"items", "total", "limit", "offset", "next_cursor"}`, where `next_cursor` continues after the last item when
    another page follows."""
    parts: list[bytes] = [row[1] for row in rows[:limit] if row[1] is not None]
    cursor = b"null"
    if len(rows) > limit:
        last = _read_position(parts[-1])
        cursor = b'"%s"' % next_cursor(Position(last.created_at, last.id)).encode()
    items = b"[%s]" % b",".join(parts)
    if any(written_spaced(part) for part in parts):
        items = msgspec.json.format(items, indent=-1)
    return b'{"items":%s,"total":%d,"limit":%d,"offset":%d,"next_cursor":%s}' % (
        items,
        rows[0][0],
        limit,
        offset,
        cursor,
    )
