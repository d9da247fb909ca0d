"""Accessibility checks in the browser: axe-core (tests/tools/axe.min.js, MPL-2.0, vendored for
the tests only) run against a console page for WCAG 2.x A and AA rules — labels, contrast,
landmarks, headings, names of links and buttons."""

from __future__ import annotations

from pathlib import Path
from typing import Any

AXE = Path(__file__).resolve().parent.parent / "tools" / "axe.min.js"
TAGS = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa"]


def violations(page: Any) -> list[str]:
    """axe's violations on the page, one line each (rule: the first offending elements). The
    page's context must be made with bypass_csp=True (the console's CSP refuses injected scripts)."""
    page.add_script_tag(content=AXE.read_text(encoding="utf-8"))
    result = page.evaluate("tags => axe.run(document, {runOnly: {type: 'tag', values: tags}})", TAGS)
    lines = []
    for v in result["violations"]:
        targets = ", ".join(str(n["target"]) for n in v["nodes"][:3])
        lines.append(f"{v['id']} ({v['impact']}): {v['help']} — {targets}")
    return lines
