"""`modelfleet demo`: the whole loop on one machine, over a compressed day."""
