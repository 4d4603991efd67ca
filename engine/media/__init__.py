"""Media: pure RTP/SDP-side logic, G.711, DTMF; ``io`` holds the only socket code (the RTP relay)."""
