"""Question banks, exams, attempts and signatures (see ../shared/DESIGN.md)."""
