"""`halles demo`: three federated third-places on 127.0.0.1 with realistic data."""
