"""The benchmark drivers `make bench` runs (not installed: they measure onebyone against its peers)."""
