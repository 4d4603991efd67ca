"""Desk-phone provisioning: configuration files by MAC over HTTP, never to a bare MAC."""
