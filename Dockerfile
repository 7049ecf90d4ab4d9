# syntax=docker/dockerfile:1
#
# The consumer and the example worker in one small image:
#
#   docker build -t tasker-consumer --build-arg VERSION=$(git describe --always --dirty) .
#   docker run --rm -e DATABASE_URL=postgres://… -p 9090:9090 tasker-consumer          # consumer run
#   docker run --rm -e DATABASE_URL=postgres://… --entrypoint /example-worker tasker-consumer
#
# The final stage is distroless (no shell, no curl): health checks belong to the orchestrator
# (an HTTP probe of :9090/readyz), not to the container. compose.yaml runs it all.

ARG GO_VERSION=1.26

FROM golang:${GO_VERSION} AS build
WORKDIR /src
# Modules first, so a source change does not download them again.
COPY go.mod go.sum ./
RUN --mount=type=cache,target=/go/pkg/mod go mod download
COPY . .
ARG VERSION=dev
RUN --mount=type=cache,target=/go/pkg/mod --mount=type=cache,target=/root/.cache/go-build \
    CGO_ENABLED=0 go build -trimpath -ldflags "-s -w -X main.version=${VERSION}" -o /out/consumer ./cmd/consumer && \
    CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o /out/example-worker ./cmd/example-worker

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/consumer /out/example-worker /
COPY --from=build /src/testdata/templates /templates
ENV CONSUMER_TEMPLATE_PATH=/templates \
    CONSUMER_HTTP_ADDR=:9090
USER nonroot:nonroot
EXPOSE 9090
ENTRYPOINT ["/consumer"]
CMD ["run"]
