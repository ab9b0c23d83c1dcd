"""The HR record in and out: batch upsert and a signed webhook for employee changes,
and each employee's training record for the HR capability file (/api/v1/hr)."""
