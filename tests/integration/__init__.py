"""Integration tests: a real ``pbx serve`` process against real SIP peers (SIPp, pjsua2, baresip)."""
