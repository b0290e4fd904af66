"""Showing results to people: terminal tables, plots, the HTML and Markdown report, confusion matrices,
the backbone listing."""
