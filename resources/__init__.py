"""Package data: icons, stylesheets, recipe presets and the demo dataset."""
