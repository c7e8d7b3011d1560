"""runmeter.collector: see DESIGN.md."""
