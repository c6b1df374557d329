"""Releases: the history store (``store``), the per-service deploy lock (``lock``), and deploy/rollback (``deployer``)."""
