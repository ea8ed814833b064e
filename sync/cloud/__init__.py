"""The cloud side: ingest (MQTT -> PostgreSQL), migrations, and the ``teddy-cloud`` CLI."""
