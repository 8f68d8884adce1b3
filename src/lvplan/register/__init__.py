"""The application register (SQLite), the desk that decides with reservations, the HTTP service."""
