// Both images in one BuildKit run: `scripts/build-images` (or `docker buildx bake`).
// The builder stage is identical in both Dockerfiles, so BuildKit builds it once per platform.
// Pushed images are multi-platform (linux/amd64, linux/arm64) and carry an SBOM and a SLSA
// provenance attestation; `scripts/build-images` without --push loads the host's platform
// only, without attestations (the local image store keeps neither an index nor attestations).

variable "REGISTRY" {
  // e.g. REGISTRY=registry.internal/modelcert/ (trailing slash); empty for local images.
  default = ""
}

variable "TAG" {
  default = "dev"
}

variable "PYTHON_IMAGE" {
  // The Dockerfiles' default, pinned by digest (a multi-platform index); bump both together.
  default = "python:3.11-slim-bookworm@sha256:0bee7276f83efd4a1ee05bbbf4281d95ed28e079220a9457f25a93e3f1e3c31b"
}

group "default" {
  targets = ["api", "worker"]
}

target "_common" {
  context   = "."
  target    = "runtime"
  args      = { PYTHON_IMAGE = PYTHON_IMAGE }
  platforms = ["linux/amd64", "linux/arm64"]
  attest = [
    "type=sbom",
    "type=provenance,mode=max",
  ]
  labels = {
    "org.opencontainers.image.source"  = "modelcert"
    "org.opencontainers.image.version" = TAG
  }
}

target "api" {
  inherits   = ["_common"]
  dockerfile = "Dockerfile.api"
  tags       = ["${REGISTRY}modelcert-api:${TAG}"]
}

target "worker" {
  inherits   = ["_common"]
  dockerfile = "Dockerfile.worker"
  tags       = ["${REGISTRY}modelcert-worker:${TAG}"]
}
