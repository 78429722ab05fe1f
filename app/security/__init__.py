"""Keys, scopes, stream tokens and quotas: who may do what, and how much."""
