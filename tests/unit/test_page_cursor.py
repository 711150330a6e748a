"""Page cursors continue exactly the list they came from and refuse anything else with a 400 naming `cursor`."""

from __future__ import annotations

import datetime
import uuid
from collections.abc import Callable

import pytest

from domain.errors import InvalidInput
from domain.pagination import MAX_OFFSET, CursorSigner, Position, check_page_request

OWNER = uuid.uuid4()
POSITION = Position(datetime.datetime(2026, 12, 6, 12, 0, 0, 123456, tzinfo=datetime.UTC), uuid.uuid4())


def test_a_cursor_gives_back_the_exact_position_it_was_made_for() -> None:
    signer = CursorSigner("secret")
    cursor = signer.encode(OWNER, "workflows:*", POSITION)
    assert signer.decode(OWNER, "workflows:*", cursor) == POSITION
    assert cursor.isascii()
    assert not set("=/+") & set(cursor), "safe in a URL as is"


def tampered(cursor: str) -> str:
    middle = len(cursor) // 2
    return cursor[:middle] + ("A" if cursor[middle] != "A" else "B") + cursor[middle + 1 :]


@pytest.mark.parametrize(
    ("owner", "scope", "cursor_of"),
    [
        (uuid.uuid4(), "workflows:*", lambda cursor: cursor),
        (OWNER, "workflows:running", lambda cursor: cursor),
        (OWNER, "uploads", lambda cursor: cursor),
        (OWNER, "workflows:*", tampered),
        (OWNER, "workflows:*", lambda cursor: cursor[:-2]),
        (OWNER, "workflows:*", lambda cursor: "not a cursor"),
        (OWNER, "workflows:*", lambda cursor: ""),
        (OWNER, "workflows:*", lambda cursor: "%%%%"),
    ],
    ids=[
        "another user's",
        "another filter's",
        "another list's",
        "tampered",
        "cut short",
        "junk",
        "empty",
        "not base64",
    ],
)
def test_a_cursor_not_made_for_this_list_is_refused_naming_the_parameter(
    owner: uuid.UUID, scope: str, cursor_of: Callable[[str], str]
) -> None:
    signer = CursorSigner("secret")
    cursor = cursor_of(signer.encode(OWNER, "workflows:*", POSITION))
    with pytest.raises(InvalidInput, match=r"^cursor: "):
        signer.decode(owner, scope, cursor)


def test_a_cursor_signed_with_another_secret_is_refused() -> None:
    cursor = CursorSigner("old secret").encode(OWNER, "workflows:*", POSITION)
    with pytest.raises(InvalidInput, match=r"^cursor: "):
        CursorSigner("new secret").decode(OWNER, "workflows:*", cursor)


def test_offset_and_cursor_are_one_at_a_time_and_offset_only_while_cheap() -> None:
    check_page_request(MAX_OFFSET, None)
    check_page_request(0, "anything")
    with pytest.raises(InvalidInput, match=r"^cursor: give a cursor or an offset"):
        check_page_request(1, "anything")
    with pytest.raises(InvalidInput, match=r"^offset: .*cursor"):
        check_page_request(MAX_OFFSET + 1, None)
