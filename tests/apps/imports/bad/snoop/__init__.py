"""``snoop``: reaches around the sharded counter's wrapper into its implementation (refused at deploy)."""
