"""Small Qt pieces every screen shares: worker bookkeeping and error sentences."""
