"""Alerts on their way out: delivery (who is told, retries, the audit records) and the transports."""
