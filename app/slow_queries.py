"""The slow-query log: a statement over the threshold is logged once, normalised, and counted by fingerprint."""

from __future__ import annotations

import hashlib
import logging
import re

from app.logs import request_id
from app.metrics import count_slow_query
from db.statements import ExecutedStatement

logger = logging.getLogger("roi.slow_query")

MAX_STATEMENT_CHARS = 2000

_COMMENT = re.compile(r"--[^\n]*|/\*.*?\*/", re.DOTALL)
_STRING = re.compile(r"'(?:[^']|'')*'")
_PARAMETER = re.compile(r"\$\d+")
_NUMBER = re.compile(r"(?<![\w$.])\d+(?:\.\d+)?(?:e[+-]?\d+)?\b", re.IGNORECASE)
_LIST = re.compile(r"\(\s*\?(?:\s*,\s*\?)+\s*\)")
_SPACE = re.compile(r"\s+")


def normalise(sql: str) -> str:
    """The statement's shape: literals and parameters become `?`, lists of them `(?, ...)`, whitespace one space.

    Literals can be personal data; lists of varying length would each get their own fingerprint.
    """
    sql = _COMMENT.sub(" ", sql)
    sql = _STRING.sub("?", sql)
    sql = _PARAMETER.sub("?", sql)
    sql = _NUMBER.sub("?", sql)
    sql = _LIST.sub("(?, ...)", sql)
    return _SPACE.sub(" ", sql).strip()


def fingerprint(normalised: str) -> str:
    """A short, stable label for a statement shape: bounded cardinality, unlike the text itself."""
    return hashlib.blake2b(normalised.encode(), digest_size=6).hexdigest()


class SlowQueryLog:
    """A query observer (db.statements) for both pools; called for every statement, so the fast path is one compare."""

    def __init__(self, threshold_ms: float) -> None:
        self.threshold_s = threshold_ms / 1000

    def __call__(self, statement: ExecutedStatement) -> None:
        if statement.elapsed_s <= self.threshold_s:
            return
        text = normalise(statement.sql)
        label = fingerprint(text)
        count_slow_query(label)
        fields = {
            "duration_ms": round(statement.elapsed_s * 1000, 3),
            "fingerprint": label,
            "statement": text[:MAX_STATEMENT_CHARS],
            "pool": statement.pool,
            "request_id": request_id.get(),
        }
        logger.warning("slow query", extra={"fields": fields})
