"""`python -m verify`: placeholder until the CLI lands (issue 4) - prints the registered claims."""

from verify.registry import all_claims

if __name__ == "__main__":
    for claim in all_claims():
        print(f"{claim.id:5s} {claim.paper}  {claim.provenance:14s} {claim.statement}")
