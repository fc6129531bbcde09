"""``peek``: a local component that mounts ``sharded_counter`` and imports only its client wrapper."""
