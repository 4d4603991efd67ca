"""Test peers: real SIP phones in their own processes, and the Softphone class that drives them."""
