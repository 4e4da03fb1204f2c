"""The local cluster: an emulated Kubernetes API server and what a real cluster runs around it.

- `cluster.LocalCluster`: the API server (kmock's emulator, fixed up) on 127.0.0.1, with
  a kubeconfig; `emulator`, `store` (object semantics), `apply`, `merging`, `selectors`,
  `faults` (injected errors and the call log) are its parts.
- `agent.NodeAgent`: kubelet + Deployment controller + garbage collector; replicas come
  from a pluggable launcher; ConfigMaps and Secrets are projected like kubelet volumes.
  Its `proxy.ServiceProxy` makes each Service reachable at its cluster IP, a loopback
  address the store allocates at create (`cluster_ips`).
- `prometheus.Prometheus` and `envoy.Envoy`: the real binaries on free local ports.
"""
