"""Testing knobs shipped with semwh (off unless explicitly switched on)."""
