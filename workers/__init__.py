"""Background jobs: plain functions taking ids (RQ style), safe to retry."""
