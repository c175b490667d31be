"""MLflow tracking of stage records: the spool stages write, the live mirror and the sync (library-free)."""
