"""The public HTTP router."""
