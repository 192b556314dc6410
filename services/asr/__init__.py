"""AsrService: streaming Whisper whose language token is restricted to the configured pair."""
