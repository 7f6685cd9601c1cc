"""Pure domain: experiments, their lifecycle and validation, assignment. No I/O here."""
