"""Synthetic ledgers for the upload parser's tests and benchmark, with the cash flows they must parse to.

Amounts carry two decimals and are written as `f"{cents / 100:.2f}"`, whose float() is exactly `cents / 100`; the
expected period sums are added in file order, as the parser adds them, so they compare exactly.
"""

from __future__ import annotations

import io
import random
from collections.abc import Iterator
from pathlib import Path

HEADER = ("date", "account", "period", "cash_flow", "memo")
ACCOUNTS = ("1000", "1200", "2100", "4000", "4100", "5000", "6100", "7200")
MEMOS = ("invoice", "refund", "payroll", "capex", "rent", "fees", "sale", "grant")


def _ledger_rows(rows: int, periods: int, seed: int) -> Iterator[tuple[str, str, int, float, str]]:
    """Rows in file order: (date, account, period, cash_flow, memo); period t falls in month t after Jan 2020."""
    rng = random.Random(seed)
    for number in range(rows):
        period = rng.randrange(periods)
        year, month = divmod(period, 12)
        date = f"{2020 + year}-{month + 1:02d}-{rng.randint(1, 28):02d}"
        cents = rng.randint(-500_000, 900_000)
        memo = f"{MEMOS[number % len(MEMOS)]} {number % 1000}"
        yield date, ACCOUNTS[rng.randrange(len(ACCOUNTS))], period, cents / 100, memo


def _sum_by_period(sums: list[float], period: int, cash_flow: float) -> None:
    if period >= len(sums):
        sums.extend([0.0] * (period + 1 - len(sums)))
    sums[period] += cash_flow


def csv_ledger_bytes(rows: int, periods: int = 120, seed: int = 7) -> tuple[bytes, list[float]]:
    """A comma-separated ledger (about 34 bytes a row) and its expected cash flows."""
    buffer = io.StringIO()
    buffer.write(",".join(HEADER) + "\n")
    sums: list[float] = []
    for date, account, period, cash_flow, memo in _ledger_rows(rows, periods, seed):
        buffer.write(f"{date},{account},{period},{cash_flow:.2f},{memo}\n")
        _sum_by_period(sums, period, cash_flow)
    return buffer.getvalue().encode(), sums


def write_csv_ledger(path: Path, rows: int, periods: int = 120, seed: int = 7) -> list[float]:
    """Write `csv_ledger_bytes` to `path`; 300,000 rows make about 10 MB."""
    data, sums = csv_ledger_bytes(rows, periods, seed)
    path.write_bytes(data)
    return sums


def write_xlsx_ledger(path: Path, rows: int, periods: int = 120, seed: int = 7) -> list[float]:
    """The same ledger as a one-sheet workbook with numeric period and cash_flow cells (needs openpyxl, a dev extra)."""
    from openpyxl import Workbook  # imported here: only the tests and the benchmark write workbooks

    workbook = Workbook(write_only=True)
    sheet = workbook.create_sheet("ledger")
    sheet.append(HEADER)
    sums: list[float] = []
    for date, account, period, cash_flow, memo in _ledger_rows(rows, periods, seed):
        sheet.append((date, account, period, cash_flow, memo))
        _sum_by_period(sums, period, cash_flow)
    workbook.save(path)
    return sums
