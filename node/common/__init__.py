"""Small helpers shared by every domain: time, errors, auth, pagination."""
