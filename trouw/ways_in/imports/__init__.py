"""Importing POS and ERP exports (customers, products, order lines) and the file-drop connector."""

from trouw.ways_in.imports.importer import (
    ImportFileError,
    ImportInterrupted,
    ImportReport,
    import_file,
)
from trouw.ways_in.imports.mapping import KINDS, Kind, Mapping, MappingError, load_mapping

__all__ = [
    "KINDS",
    "ImportFileError",
    "ImportInterrupted",
    "ImportReport",
    "Kind",
    "Mapping",
    "MappingError",
    "import_file",
    "load_mapping",
]
