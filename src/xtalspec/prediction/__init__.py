"""Apply trained models to a user's measured data."""
