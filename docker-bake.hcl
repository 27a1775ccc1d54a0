# The container images of Fogmarket (docker/*.Dockerfile), built from the workspace root:
#   docker buildx bake                       # all three
#   docker buildx bake fog-node              # one
#   REGISTRY=registry.example:5000/fogmarket TAG=dev docker buildx bake --push
# testbed/k8s uses these names and tags.

variable "REGISTRY" {
  default = "ghcr.io/fogmarket"
}

# The workspace version (Cargo.toml).
variable "TAG" {
  default = "0.1.0"
}

group "default" {
  targets = ["marketplace", "fog-node", "faas-gateway"]
}

target "_common" {
  context   = "."
  platforms = ["linux/amd64"]
}

target "marketplace" {
  inherits   = ["_common"]
  dockerfile = "docker/marketplace.Dockerfile"
  tags       = ["${REGISTRY}/marketplace:${TAG}"]
}

target "fog-node" {
  inherits   = ["_common"]
  dockerfile = "docker/fog-node.Dockerfile"
  tags       = ["${REGISTRY}/fog-node:${TAG}"]
}

target "faas-gateway" {
  inherits   = ["_common"]
  dockerfile = "docker/faas-gateway.Dockerfile"
  tags       = ["${REGISTRY}/faas-gateway:${TAG}"]
}
