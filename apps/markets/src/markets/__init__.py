"""markets: sports prediction markets on mainspring."""
