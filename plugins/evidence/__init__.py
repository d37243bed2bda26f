"""Evidence conditions: what a searching arm reads back after each search (``--intervention`` of a
tool-use eval such as ``search_r1``). Contract: ``harness.protocols.KINDS["evidence"]``."""
