"""Files that ship inside the package (the demo sample manifest)."""
