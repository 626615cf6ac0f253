"""Charts for report pages: pygal's SVG, inlined, without any script (pages load nothing)."""

from __future__ import annotations

import re
from typing import Any

# pygal always inlines its tooltip script's config, even with js=[] (no tooltip script): without
# the script it is dead weight, and a page without any script is simpler to trust.
_SCRIPT = re.compile(r"<script\b.*?</script>", re.S)


def static_svg(chart: Any) -> str:
    """The chart as inline SVG: no XML declaration, no script."""
    return _SCRIPT.sub("", str(chart.render(is_unicode=True, disable_xml_declaration=True)))
