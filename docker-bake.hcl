// Both images in one BuildKit run: `scripts/build-images` (or `docker buildx bake`).
// The builder stage is identical in both Dockerfiles, so BuildKit builds it once.

variable "REGISTRY" {
  // e.g. REGISTRY=registry.internal/modelcert/ (trailing slash); empty for local images.
  default = ""
}

variable "TAG" {
  default = "dev"
}

variable "PYTHON_IMAGE" {
  // Pin by digest in CI: python:3.11-slim-bookworm@sha256:...
  default = "python:3.11-slim-bookworm"
}

group "default" {
  targets = ["api", "worker"]
}

target "_common" {
  context   = "."
  target    = "runtime"
  args      = { PYTHON_IMAGE = PYTHON_IMAGE }
  platforms = ["linux/amd64"]
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
