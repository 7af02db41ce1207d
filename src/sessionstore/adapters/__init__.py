"""Adapters that make this store the session layer of agent frameworks (optional extras)."""
