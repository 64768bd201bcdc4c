"""Files on disk and the job history: atomic writes, safetensors checks, SQLite, locks."""
