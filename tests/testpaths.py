"""Where the test captures are (imported by test modules; conftest.py holds the fixtures)."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
#: The captures recorded by captures/record.py (committed).
CAPTURES = ROOT / "captures"
#: The zeek test captures in shared/, beside the project (never copied into it).
ZEEK = ROOT.parent / "shared" / "captures" / "zeek"
