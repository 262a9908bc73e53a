"""The live page: rolling statistics built from batch summaries, and the static page itself."""

from __future__ import annotations

from importlib import resources

from peaknet_serve.live.board import BatchSummarizer, BatchSummary, LiveBoard, summarize_batch

__all__ = ["ASSETS", "BatchSummarizer", "BatchSummary", "LiveBoard", "asset", "summarize_batch"]

ASSETS = {
    "index.html": "text/html; charset=utf-8",
    "live.js": "text/javascript; charset=utf-8",
    "charts.js": "text/javascript; charset=utf-8",
    "live.css": "text/css; charset=utf-8",
}
"""The page's files (package data under ``live/static/``) and their media types."""


def asset(name: str) -> tuple[bytes, str]:
    """The bytes and media type of one of the page's files; KeyError for any other name."""
    media_type = ASSETS[name]
    return (resources.files(__package__) / "static" / name).read_bytes(), media_type
