"""API v1, HR sync, risk signals, performance export, feeds, webhooks (see ../shared/DESIGN.md)."""
