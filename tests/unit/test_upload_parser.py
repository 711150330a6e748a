"""The ledger parser: what a user's CSV or XLSX file turns into, and what a bad file's error says."""

import io
import random
import zipfile
from collections.abc import Sequence
from pathlib import Path

import pytest
from openpyxl import Workbook

from domain.uploads import parser
from domain.uploads.parser import MAX_PERIODS, Ledger, LedgerError, detect_format, parse_ledger
from testkit.ledgers import csv_ledger_bytes, write_csv_ledger, write_xlsx_ledger


def parse(data: bytes) -> Ledger:
    return parse_ledger(io.BytesIO(data))


def error_of(data: bytes) -> str:
    with pytest.raises(LedgerError) as raised:
        parse(data)
    return str(raised.value)


def xlsx(rows: Sequence[Sequence[object]]) -> bytes:
    """A workbook whose first sheet holds `rows` from A1 (None leaves a cell empty, [] a row blank)."""
    workbook = Workbook()
    sheet = workbook.active
    assert sheet is not None
    for row in rows:
        sheet.append(list(row))
    workbook.create_sheet("ignored").append(["period", "cash_flow"])
    buffer = io.BytesIO()
    workbook.save(buffer)
    return buffer.getvalue()


# CSV: what a good file gives


def test_rows_of_a_period_are_summed_and_missing_periods_are_zero() -> None:
    ledger = parse(b"period,cash_flow\n0,-1000\n2,300.5\n2,200.25\n4,700\n0,-50\n")
    assert ledger == Ledger(rows=5, cash_flows=[-1050.0, 0.0, 500.75, 0.0, 700.0])


def test_columns_are_found_by_name_in_any_order_case_and_spacing_aside() -> None:
    ledger = parse(b"memo, Cash_Flow ,date,PERIOD \nrent,-10,2024-01-01,1\nsale,25.5,2024-02-01,0\n")
    assert ledger.cash_flows == [25.5, -10.0]


def test_bom_semicolons_crlf_blank_lines_and_padding_are_tolerated() -> None:
    data = b"\xef\xbb\xbf\r\ndate;period;cash_flow\r\n2024-01-01; 0 ; -100 \r\n\r\n;;\r\n2024-02-01;1;40\r\n\r\n"
    assert parse(data) == Ledger(rows=2, cash_flows=[-100.0, 40.0])


def test_tab_separated_ledger() -> None:
    assert parse(b"period\tcash_flow\tmemo\n0\t-5\ta, b\n1\t8\tc\n").cash_flows == [-5.0, 8.0]


def test_quoted_fields_may_hold_delimiters_and_line_breaks() -> None:
    data = b'period,memo,cash_flow\n0,"rent, office\nsecond line",-10\n1,"""quoted""",20\n'
    assert parse(data) == Ledger(rows=2, cash_flows=[-10.0, 20.0])


def test_a_whole_number_written_with_decimals_is_a_period() -> None:
    assert parse(b"period,cash_flow\n1.0,5\n1,6\n").cash_flows == [0.0, 11.0]


def test_generated_300k_row_ledger_parses_to_its_period_sums(tmp_path: Path) -> None:
    path = tmp_path / "ledger.csv"
    expected = write_csv_ledger(path, rows=300_000, periods=120)
    with path.open("rb") as stream:
        ledger = parse_ledger(stream)
    assert ledger.rows == 300_000
    assert len(ledger.cash_flows) == 120
    assert ledger.cash_flows == expected


def test_progress_reports_growing_byte_counts_up_to_the_file_size() -> None:
    data, _ = csv_ledger_bytes(200_000)
    reported: list[int] = []
    parse_ledger(io.BytesIO(data), on_progress=reported.append)
    assert len(reported) >= 3
    assert reported == sorted(reported)
    assert reported[-1] == len(data)


def test_the_callers_stream_stays_open() -> None:
    stream = io.BytesIO(b"period,cash_flow\n0,1\n")
    parse_ledger(stream)
    assert not stream.closed


# CSV: what a bad file says


def test_data_without_a_header_names_line_1() -> None:
    assert error_of(b"0,100\n1,200\n") == (
        "line 1: expected a header row with the columns 'period' and 'cash_flow', found '0', '100'"
    )


def test_a_missing_column_is_named() -> None:
    assert error_of(b"date,period,amount\n2024-01-01,0,5\n") == "line 1: the header has no 'cash_flow' column"


def test_a_column_named_twice_is_ambiguous() -> None:
    assert error_of(b"period,cash_flow,period\n0,1,2\n") == "line 1: the header names 'period' more than once"


def test_a_non_number_names_its_line_and_value() -> None:
    data, _ = csv_ledger_bytes(12_343)  # the header and 12,343 rows fill lines 1 to 12,344
    data += b"2024-01-01,1000,5,abc,memo\n"
    assert error_of(data) == "line 12345: cash_flow 'abc' is not a number"


def test_a_negative_period() -> None:
    assert error_of(b"period,cash_flow\n0,1\n-3,5\n") == "line 3: period -3 is negative; periods count from 0"


def test_a_period_past_the_limit() -> None:
    data = f"period,cash_flow\n{MAX_PERIODS - 1},1\n{MAX_PERIODS},1\n".encode()
    assert error_of(data) == f"line 3: period {MAX_PERIODS} is over the last allowed period, {MAX_PERIODS - 1}"


def test_a_fractional_period() -> None:
    assert error_of(b"period,cash_flow\n7.5,1\n") == "line 2: period '7.5' is not a whole number"


@pytest.mark.parametrize("value", ["nan", "inf", "-Infinity"])
def test_non_finite_cash_flows(value: str) -> None:
    data = f"period,cash_flow\n0,1\n1,{value}\n".encode()
    assert error_of(data) == f"line 3: cash_flow '{value}' is not a finite number"


def test_sums_that_overflow() -> None:
    assert error_of(b"period,cash_flow\n0,1e308\n0,1e308\n") == (
        "the cash flows of period 0 add up beyond the range of numbers"
    )


def test_an_empty_cash_flow() -> None:
    assert error_of(b"period,cash_flow,memo\n0,,rent\n") == "line 2: cash_flow is empty"


def test_a_row_too_short_to_hold_the_columns() -> None:
    assert error_of(b"date,period,cash_flow\n2024-01-01,0\n") == (
        "line 2: the row has 2 fields, too few to hold both 'period' and 'cash_flow'"
    )


def test_an_error_after_a_multi_line_field_names_the_physical_line() -> None:
    assert (
        error_of(b'period,memo,cash_flow\n0,"two\nlines",1\n1,"x\ny",bad\n')
        == "line 4: cash_flow 'bad' is not a number"
    )


def test_binary_junk_is_an_error_with_a_line() -> None:
    junk = bytearray(random.Random(3).randbytes(50_000))
    junk[0:2] = b"ab"  # no file magic: it is taken for CSV
    junk[100] = 0
    assert error_of(bytes(junk)).startswith("line ")


def test_text_that_is_not_utf8_names_the_line_of_the_first_bad_byte() -> None:
    data, _ = csv_ledger_bytes(5_000)  # well past the first 64 KiB of decoding
    data += b"2024-01-01,1000,5,1.00,caf\xe9\n"
    assert error_of(data) == "line 5002: the text is not UTF-8"


def test_a_nul_byte_is_an_error_with_its_line() -> None:
    assert error_of(b"period,cash_flow\n0,1\n1,2\x003\n").startswith("line 3: ")


def test_an_empty_file() -> None:
    assert error_of(b"") == "the file is empty"


def test_a_file_of_blank_lines_is_empty() -> None:
    assert error_of(b"\n  \r\n\n") == "the file is empty"


def test_a_header_without_rows() -> None:
    assert error_of(b"period,cash_flow\n\n") == "line 1: the header is not followed by any data rows"


def test_an_old_xls_workbook_is_refused_by_name() -> None:
    assert error_of(b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + bytes(500)) == (
        "the file is an old-style .xls workbook; save it as .xlsx or .csv"
    )


# XLSX


def test_format_comes_from_the_first_bytes() -> None:
    assert detect_format(b"PK\x03\x04\x14\x00") == "xlsx"
    assert detect_format(b"period,cash_flow\n") == "csv"
    assert detect_format(b"") == "csv"


def test_xlsx_ledger_from_its_first_sheet() -> None:
    data = xlsx(
        [
            [],
            [],
            ["Date", " Period", "Cash_Flow", "Memo"],
            ["2024-01-01", 0, -1000, "capex"],
            [],
            ["2024-02-01", 2.0, 250.5, None],
            ["2024-02-02", "2", "49.5", "typed as text"],
        ]
    )
    assert parse(data) == Ledger(rows=3, cash_flows=[-1000.0, 0.0, 300.0])


def test_generated_xlsx_ledger_parses_to_its_period_sums(tmp_path: Path) -> None:
    path = tmp_path / "ledger.xlsx"
    expected = write_xlsx_ledger(path, rows=3_000, periods=36)
    with path.open("rb") as stream:
        ledger = parse_ledger(stream)
    assert ledger == Ledger(rows=3_000, cash_flows=expected)


def test_xlsx_non_number_names_its_sheet_row() -> None:
    data = xlsx([[], ["period", "cash_flow"], [0, 10], [1, 20], [2, "twelve"]])
    assert error_of(data) == "line 5: cash_flow 'twelve' is not a number"


def test_xlsx_fractional_period_names_its_row() -> None:
    assert error_of(xlsx([["period", "cash_flow"], [0, 1], [1.5, 2]])) == "line 3: period '1.5' is not a whole number"


def test_xlsx_boolean_is_not_a_cash_flow() -> None:
    assert error_of(xlsx([["period", "cash_flow"], [0, True]])) == "line 2: cash_flow 'True' is not a number"


def test_xlsx_without_the_columns_names_the_header_row() -> None:
    assert error_of(xlsx([[], ["period", "amount"], [0, 1]])) == "line 2: the header has no 'cash_flow' column"


def test_xlsx_header_without_rows() -> None:
    assert error_of(xlsx([["period", "cash_flow"]])) == "line 1: the header is not followed by any data rows"


def test_xlsx_with_an_empty_first_sheet() -> None:
    assert error_of(xlsx([])) == "the first sheet is empty"


def test_a_file_starting_like_xlsx_that_is_no_workbook() -> None:
    message = error_of(b"PK\x03\x04" + random.Random(5).randbytes(2_000))
    assert message.startswith("the file starts like an XLSX workbook but is not one")


def test_a_zip_archive_that_is_no_workbook() -> None:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("notes.txt", "period,cash_flow\n0,1\n")
    assert error_of(buffer.getvalue()).startswith("the file is not a readable XLSX workbook")


def test_a_workbook_too_big_to_unpack_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(parser, "XLSX_MAX_UNPACKED_BYTES", 1 << 20)
    path = tmp_path / "ledger.xlsx"
    write_xlsx_ledger(path, rows=5_000)
    message = error_of(path.read_bytes())
    assert message.startswith("the workbook unpacks to 1.")
    assert message.endswith(" MiB, over the 1 MiB an XLSX ledger may have; upload it as CSV")
