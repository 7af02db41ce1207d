"""Cold tier: transcripts (``jsonl``)."""
