"""Administration: users and roles, the work calendar."""
