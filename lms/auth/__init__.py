"""Login, server-side sessions, throttling and permission checks."""
