"""Barcodes the till scans from a phone screen: Code 128 as SVG (python-barcode)."""

from __future__ import annotations

import base64
import io

from barcode import Code128
from barcode.writer import SVGWriter

# Module width and quiet zone in mm at 96 dpi: wide enough bars for a laser scanner reading a
# phone screen, a quiet zone of ten modules each side (ISO/IEC 15417 asks for ten).
_OPTIONS = {"module_height": 14.0, "module_width": 0.33, "quiet_zone": 3.3, "write_text": False}


def code128_svg(text: str) -> str:
    """The SVG document of a Code 128 barcode of `text` (any printable ASCII)."""
    buffer = io.BytesIO()
    Code128(text, writer=SVGWriter()).write(buffer, options=_OPTIONS)
    return buffer.getvalue().decode()


def code128_data_uri(text: str) -> str:
    """For an <img src>: the page carries the barcode itself, nothing is fetched."""
    return "data:image/svg+xml;base64," + base64.b64encode(code128_svg(text).encode()).decode()
