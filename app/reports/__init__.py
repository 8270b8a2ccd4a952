"""Report pages: what a certification shows a person (HTML and SVG), for the API and the CLI."""
