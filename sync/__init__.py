"""Both ends of the MQTT pipe between bear and cloud."""
