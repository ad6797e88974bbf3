"""Named SQL queries shipped with semwh (one `.sql` file per query)."""
