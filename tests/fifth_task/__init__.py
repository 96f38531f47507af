"""A fifth task added in its own files only: a new target field (``angle``), its own answer format and JSONL schema."""
