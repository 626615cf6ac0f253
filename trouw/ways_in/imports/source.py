"""Reading export files record by record: CSV, JSON Lines or a JSON array, in any common encoding."""

from __future__ import annotations

import codecs
import csv
import io
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, BinaryIO

_CHUNK = 1 << 20
_DELIMITERS = (";", ",", "\t", "|")
_JSON_SUFFIXES = (".json", ".jsonl", ".ndjson")


class SourceError(ValueError):
    """The file as a whole cannot be read (no header, broken JSON array); the message says where."""


@dataclass(frozen=True)
class SourceRecord:
    """One record of the file: the line it starts on, column -> value, and the raw cells."""

    line: int
    values: dict[str, Any]
    raw: list[str] | str
    problem: str | None = None  # set when the record itself is unreadable


def detect_encoding(path: Path) -> str:
    """utf-8-sig or utf-16 when a BOM says so; utf-8 when every byte decodes; else cp1252.

    The check reads the whole file once in 1 MiB chunks (constant memory): an "é" from a Windows
    till can sit on line 90,000, so the first kilobytes alone cannot tell.
    """
    with path.open("rb") as handle:
        head = handle.read(4)
        if head.startswith(codecs.BOM_UTF8):
            return "utf-8-sig"
        if head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
            return "utf-16"
        handle.seek(0)
        decoder = codecs.getincrementaldecoder("utf-8")()
        try:
            while chunk := handle.read(_CHUNK):
                decoder.decode(chunk)
            decoder.decode(b"", final=True)
        except UnicodeDecodeError:
            return "cp1252"
    return "utf-8"


def sniff_delimiter(first_line: str) -> str:
    """The separator the header uses most: `;` for Excel in Dutch or French, `,` elsewhere."""
    counts = {d: first_line.count(d) for d in _DELIMITERS}
    best = max(counts, key=lambda d: counts[d])
    return best if counts[best] else ","


def is_json(path: Path) -> bool:
    return path.suffix.lower() in _JSON_SUFFIXES


class Source:
    """An open export file; iterate `records()` once. Use as a context manager."""

    def __init__(
        self, path: Path, *, encoding: str | None = None, delimiter: str | None = None
    ) -> None:
        self.path = path
        self.size = path.stat().st_size
        self.encoding = encoding or detect_encoding(path)
        self._binary: BinaryIO = path.open("rb")
        # cp1252 leaves five bytes undefined; replace them rather than refuse the whole file.
        errors = "replace" if self.encoding.replace("-", "").lower() == "cp1252" else "strict"
        self._text = io.TextIOWrapper(
            self._binary, encoding=self.encoding, newline="", errors=errors
        )
        self.format = "csv"
        self.delimiter = delimiter
        self.columns: list[str] | None = None
        if is_json(path):
            self.format = "jsonl"
            first = self._peek_non_space()
            if first == "[":
                self.format = "json"
        else:
            self._start_csv()

    def __enter__(self) -> Source:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        self._text.close()

    @property
    def bytes_read(self) -> int:
        """How far the reader is, in bytes (it reads ahead a little): for a progress bar."""
        return min(self._binary.tell(), self.size)

    def _peek_non_space(self) -> str:
        while True:
            char = self._text.read(1)
            if not char or not char.isspace():
                self._rewind()
                return char.lstrip("\ufeff")[:1]

    def _rewind(self) -> None:
        self._text.seek(0)

    def _start_csv(self) -> None:
        header_line = self._text.readline()
        self._rewind()
        if not header_line.strip():
            raise SourceError(f"{self.path.name}: empty file, expected a header line")
        self.delimiter = self.delimiter or sniff_delimiter(header_line)
        self._reader = csv.reader(self._text, delimiter=self.delimiter)
        header = next(self._reader)
        self.columns = [column.strip().lstrip("\ufeff") for column in header]
        if not any(self.columns):
            raise SourceError(f"{self.path.name}: the first line is not a header")

    def records(self) -> Iterator[SourceRecord]:
        if self.format == "csv":
            return self._csv_records()
        if self.format == "jsonl":
            return self._jsonl_records()
        return self._json_array_records()

    def _csv_records(self) -> Iterator[SourceRecord]:
        assert self.columns is not None
        columns = self.columns
        width = len(columns)
        last_line = self._reader.line_num
        while True:
            try:
                cells = next(self._reader)
            except StopIteration:
                return
            except csv.Error as exc:
                line = last_line + 1
                last_line = self._reader.line_num
                yield SourceRecord(line, {}, [], problem=f"unreadable CSV: {exc}")
                continue
            line, last_line = last_line + 1, self._reader.line_num
            if not any(cell.strip() for cell in cells):
                continue
            if len(cells) > width and any(cell.strip() for cell in cells[width:]):
                yield SourceRecord(
                    line,
                    {},
                    cells,
                    problem=f"{len(cells)} cells but the header has {width} columns",
                )
                continue
            values = dict(zip(columns, cells, strict=False))
            yield SourceRecord(line, values, cells)

    def _jsonl_records(self) -> Iterator[SourceRecord]:
        for number, text in enumerate(self._text, start=1):
            text = text.strip().lstrip("\ufeff")
            if not text:
                continue
            try:
                value = json.loads(text)
            except json.JSONDecodeError as exc:
                yield SourceRecord(number, {}, text, problem=f"invalid JSON: {exc.msg}")
                continue
            yield _json_record(number, value, text)

    def _json_array_records(self) -> Iterator[SourceRecord]:
        """Parse a JSON array element by element, so a big array never sits in memory whole."""
        decoder = json.JSONDecoder()
        buffer = ""
        pos = 0
        line = 1  # the line number at buffer[pos]
        eof = False
        started = False

        def fill() -> bool:
            nonlocal buffer, pos, eof
            chunk = self._text.read(_CHUNK // 4)
            buffer = buffer[pos:] + chunk
            pos = 0
            eof = not chunk
            return bool(chunk)

        def skip(chars: str) -> None:
            nonlocal pos, line
            while True:
                while pos < len(buffer) and buffer[pos] in chars:
                    line += buffer[pos] == "\n"
                    pos += 1
                if pos < len(buffer) or not fill():
                    return

        skip(" \t\r\n\ufeff")
        if pos < len(buffer) and buffer[pos] == "[":
            pos += 1
            started = True
        if not started:
            raise SourceError(f"{self.path.name}: expected a JSON array")
        while True:
            skip(" \t\r\n,")
            if pos >= len(buffer):
                raise SourceError(f"{self.path.name}: line {line}: the JSON array is not closed")
            if buffer[pos] == "]":
                return
            while True:
                try:
                    value, end = decoder.raw_decode(buffer, pos)
                    break
                except json.JSONDecodeError as exc:
                    if eof or not fill():
                        raise SourceError(
                            f"{self.path.name}: line {line}: invalid JSON ({exc.msg}); "
                            "the rest of the array is not read"
                        ) from None
            text = buffer[pos:end]
            yield _json_record(line, value, text)
            line += text.count("\n")
            pos = end


def _json_record(line: int, value: Any, text: str) -> SourceRecord:
    if not isinstance(value, dict):
        return SourceRecord(line, {}, text, problem="not a JSON object")
    return SourceRecord(line, value, text)
