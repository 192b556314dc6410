"""Tandem's gRPC services: asr, translate and session, started the same way (see __main__)."""
