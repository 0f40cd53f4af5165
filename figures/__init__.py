"""fairverify: figures."""
