"""The example agents (``runmeter.examples``): scripts that ``runmeter demo`` runs under
``opentelemetry-instrument`` against the simulator in :mod:`runmeter.testing`. Read them, copy
them; they are not an API. ``queries.sql`` holds plain SQL for the key questions."""
