"""Pruning: decide what to remove (importance scores -> a PruningPlan), then surgery removes it."""
