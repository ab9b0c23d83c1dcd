"""Course versions, lessons, media and watch tracking (see ../shared/DESIGN.md)."""
