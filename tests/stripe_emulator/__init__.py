"""A stateful Stripe emulator that stripe-python talks to over HTTP (see README in this folder)."""
