"""B2BUA call control: a call is an inbound leg and outbound legs under a controller; ringing; CDRs."""
