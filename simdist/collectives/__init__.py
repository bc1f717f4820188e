"""Collective algorithms (SPMD, written once per rank) over a transport interface, and their traces."""
