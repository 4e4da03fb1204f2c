"""modelfleet: a Kubernetes operator for a pooled GPU fleet of vLLM model servers."""

__version__ = "0.1.0"
