"""fairverify: layers."""
