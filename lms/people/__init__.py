"""Departments, positions, employees, users and roles."""
