"""Regulation feeds: fetch (``fetch``), read (``parse``, ``dates``), poll and deduplicate
(``poll``), admin services (``sources``), pages (``views``) and commands (``cli``).

New items go to ``lms.compliance.regulation.intake.create_update``, which starts each
update's working-day clock. ``DEMO_FEEDS`` names the two saved feeds the demo company
loads through ``poll.ingest_bytes`` (no network).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

__all__ = ["DEMO_DIR", "DEMO_FEEDS", "DemoFeed"]

DEMO_DIR = Path(__file__).resolve().parent / "demo"


@dataclass(frozen=True)
class DemoFeed:
    """A saved feed for the demo: create a ``FeedSource`` from the first four fields
    (disabled, so the tick never polls the address), then
    ``ingest_bytes(session, source, demo.path.read_bytes(), {}, now=..., calendar=...)``."""

    name: str
    url: str
    default_topic: str
    poll_minutes: int
    filename: str

    @property
    def path(self) -> Path:
        return DEMO_DIR / self.filename


DEMO_FEEDS = (
    DemoFeed(name="人社部 政策法规", url="https://www.mohrss.gov.cn/SYrlzyhshbzb/zcfg/rss.xml",
             default_topic="labour_contracts", poll_minutes=240,
             filename="mohrss_policies_gbk.xml"),
    DemoFeed(name="劳动争议典型案例", url="https://example.court.gov.cn/labour-cases/atom.xml",
             default_topic="other", poll_minutes=720, filename="labour_dispute_cases.atom"),
)
