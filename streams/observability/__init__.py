"""Grafana dashboards and the revocation-latency objective, as code (deploy/grafana/)."""
