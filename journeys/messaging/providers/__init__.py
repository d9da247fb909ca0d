"""Providers behind one interface: Twilio (SMS), SMTP (email), the built-in outbox."""
