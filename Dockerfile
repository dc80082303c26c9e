# One image with the three binaries and HAProxy: the sidecar can run HAProxy
# itself (--run-haproxy) or talk to an HAProxy container over a shared volume.
FROM golang:1.26-bookworm AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
RUN CGO_ENABLED=0 go build -trimpath -ldflags=-s -o /out/ ./cmd/...

FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends haproxy ca-certificates \
 && rm -rf /var/lib/apt/lists/*
COPY --from=build /out/ /usr/local/bin/
# A numeric user, so that a pod's runAsNonRoot can be verified. haproxy has
# no file capability: in a pod that drops every capability the kernel refuses
# to run a binary that has one ("operation not permitted", seen on a real
# node). A port below 1024 is bound through the sysctl
# net.ipv4.ip_unprivileged_port_start, which track-controller sets in the
# HAProxy tier's pods and Docker sets to 0 in every container.
RUN useradd --system --uid 10001 --user-group --no-create-home --shell /usr/sbin/nologin trackrouter \
 && mkdir -p /var/run/haproxy && chown 10001:10001 /var/run/haproxy
USER 10001:10001
ENTRYPOINT ["/usr/local/bin/trackrouter"]
