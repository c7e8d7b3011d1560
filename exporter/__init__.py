"""runmeter.exporter: see DESIGN.md."""
