"""Mandatory training: assignment rules, assignments with working-day due dates, status
changes, reminders and escalation (issue #5)."""
