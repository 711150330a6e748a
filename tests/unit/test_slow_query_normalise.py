"""Normalising statements for the slow-query log: no literals, one shape per statement, a stable fingerprint."""

from __future__ import annotations

from app.slow_queries import fingerprint, normalise


def test_literals_and_parameters_become_placeholders() -> None:
    sql = "SELECT * FROM users WHERE email = 'a@b.c' AND id = $1 AND age > 42 AND score < 1.5e3"
    assert normalise(sql) == "SELECT * FROM users WHERE email = ? AND id = ? AND age > ? AND score < ?"


def test_identifiers_with_digits_and_casts_are_kept() -> None:
    sql = "SELECT t1.col_2, anon_1.x FROM t1 WHERE t1.id = $12::UUID"
    assert normalise(sql) == "SELECT t1.col_2, anon_1.x FROM t1 WHERE t1.id = ?::UUID"


def test_whitespace_comments_and_quotes_collapse() -> None:
    sql = "SELECT  'it''s'  -- a comment\n\t, /* another\n one */ 1"
    assert normalise(sql) == "SELECT ? , ?"


def test_lists_of_any_length_share_a_fingerprint() -> None:
    short = normalise("SELECT 1 FROM w WHERE id IN ($1, $2)")
    long = normalise("SELECT 1 FROM w WHERE id IN ($1, $2, $3, $4, $5)")
    assert short == long == "SELECT ? FROM w WHERE id IN (?, ...)"
    assert fingerprint(short) == fingerprint(long)
    assert len(fingerprint(short)) == 12
    assert fingerprint(short) != fingerprint(normalise("SELECT 1 FROM v WHERE id IN ($1)"))
