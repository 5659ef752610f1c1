# syntax=docker/dockerfile:1
#
# warren's container image: one static binary, run as a non-root user.
#
#   docker build -t warren:dev .
#   docker run --rm warren:dev version
#
# The image runs any warren command: `api`, `worker POOL`, `autoscale` (which
# starts `/warren worker POOL` processes itself), and the client commands.
# Workers in other languages (workers/python) need images of their own.

FROM golang:1.26 AS build
WORKDIR /src
# Modules first, so that a source change does not download them again.
COPY go.mod go.sum ./
RUN --mount=type=cache,target=/go/pkg/mod \
    go mod download
COPY . .
ARG VERSION=dev
RUN --mount=type=cache,target=/go/pkg/mod \
    --mount=type=cache,target=/root/.cache/go-build \
    CGO_ENABLED=0 go build -trimpath -buildvcs=false \
      -ldflags "-s -w -X github.com/warrenhq/warren/cmd/warren/cli.Version=${VERSION}" \
      -o /out/warren ./cmd/warren

# distroless/static: CA certificates (webhooks and image URLs over HTTPS),
# tzdata, /etc/passwd with the nonroot user (65532), and no shell.
FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/warren /warren
USER nonroot:nonroot
# The API (warren api) and a worker's health and metrics endpoints.
EXPOSE 8080 9091
ENTRYPOINT ["/warren"]
CMD ["--help"]
