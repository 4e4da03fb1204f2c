"""The Envoy gateway of a RoutingPolicy as files (pure): `render.render_gateway` turns a
routing table, the pool, the policy and the API keys into file name -> text.
`docs/gateway.md` describes what the rendered gateway does."""
