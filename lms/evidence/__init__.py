"""Evidence packs: one employee's training records as a signed PDF.

``pack`` gathers the records, ``pdf`` renders them with an embedded CJK font (``fonts``),
``signing`` signs the PDF (PAdES B-B) and recognises our own packs, ``export`` is the
unit of work (verify the ledger, gather, render, sign, record the export in the ledger),
``views`` and ``cli`` are the two ways in.
"""
