"""The parent app: sign in, pair, consent, see, export and delete (issue 14)."""
