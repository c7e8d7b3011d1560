"""runmeter.instrumentation: see DESIGN.md."""
