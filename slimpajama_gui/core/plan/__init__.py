"""What a job will do, before it runs: recipes (YAML), presets, estimates. No torch."""
