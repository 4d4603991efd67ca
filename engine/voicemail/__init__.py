"""Voicemail: mailboxes, greeting choice, the deposit flow and the *98/*99 menu (pure), message storage."""
