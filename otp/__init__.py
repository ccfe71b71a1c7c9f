"""otp: self-hosted SMS two-factor authentication."""

__version__ = "0.1.0"
