"""A single-document counter: the baseline the sharded counter is compared with."""
