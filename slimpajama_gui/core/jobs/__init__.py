"""Running a recipe: the pipeline, its step handlers and the saved variants."""
