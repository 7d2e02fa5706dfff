#!/bin/sh
# Called by skaffold with $IMAGE and $BUILD_CONTEXT set.
set -e
PLATFORMS=linux/amd64,linux/arm64
docker buildx build --platform "$PLATFORMS" --tag "$IMAGE" --push "$BUILD_CONTEXT"
