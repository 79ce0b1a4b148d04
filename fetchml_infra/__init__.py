"""fetchml-infra: deploy and roll back FetchML on Docker with Pulumi (image-only, health-gated, audited)."""
