"""The risk module: risk types mapped to courses, inbound risk signals that become targeted training, outbound training gaps (see ../../shared/DESIGN.md)."""
