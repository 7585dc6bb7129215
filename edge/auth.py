"""Re-export for ``router/auth.py``, which still imports the authoriser from here: JWT auth now
lives in :mod:`ofa_contract.auth`. Delete this module once the router imports that instead."""

from ofa_contract.auth import AuthError, Authorizer

__all__ = ["AuthError", "Authorizer"]
