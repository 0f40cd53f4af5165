"""fairverify: proofs_numeric."""
