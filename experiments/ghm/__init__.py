"""GHM / belief-propagation experiments E1-E4 (THEORY §7.7)."""
