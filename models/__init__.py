"""Learning: small online models over per-user state."""
