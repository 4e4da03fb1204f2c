"""The local cluster: an emulated Kubernetes API server and what a real cluster runs around it.

- `cluster.LocalCluster`: the API server (kmock's emulator, fixed up) on 127.0.0.1, with
  a kubeconfig; `emulator`, `store` (object semantics), `apply`, `merging`, `selectors`,
  `faults` (injected errors and the call log) are its parts. What kubectl needs from a
  real server: `openapi` (/openapi/v2 and /openapi/v3 from the served schemas: the CRDs'
  and `builtin_kinds`'), `admission` (custom resources checked against their CRD:
  `schema_validation` and `cel_rules`), `tables` (server-side printing), `events`
  (repeated Events counted on one object); CRDs are objects that define what is served.
- `agent.NodeAgent`: kubelet + Deployment controller + garbage collector; replicas come
  from a pluggable launcher; ConfigMaps and Secrets are projected like kubelet volumes.
  Its `proxy.ServiceProxy` makes each Service reachable at its cluster IP, a loopback
  address the store allocates at create (`cluster_ips`).
- `prometheus.Prometheus` and `envoy.Envoy`: the real binaries on free local ports.
- `fleet.LocalFleet`: all of it plus the real operator and gateway processes.
"""
