"""Every output: the phrases shared, alert messages, table/plain/JSON/Nagios, HTML, Prometheus text."""
