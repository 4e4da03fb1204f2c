"""envoy."""
