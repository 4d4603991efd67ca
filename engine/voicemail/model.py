"""Mailboxes, message metadata, greeting choice and the *98/*99 menu state machine: pure, no audio or I/O."""
