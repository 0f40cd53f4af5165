"""fairverify: bench."""
