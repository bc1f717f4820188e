"""Placeholder: being implemented in this session."""
