"""The pure sans-IO SIP core (RFC 3261 and friends): no sockets, no clocks, no event loop."""
