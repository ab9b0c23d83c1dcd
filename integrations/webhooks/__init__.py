"""Signed outbound webhooks: training events (completions, exam results, signatures)
POSTed to the endpoints an admin registers, retried with back-off, logged per delivery."""
