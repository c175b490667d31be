"""Report: tables (pure pandas) and plots (matplotlib) built from the tidy summary table."""
