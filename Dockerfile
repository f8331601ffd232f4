# Switchyard's container image: the sidecar and the default config (the churn example, every
# version embedded, so the image answers with nothing else running).
#
#   docker build -t switchyard:dev .
#   docker run --rm --network host switchyard:dev            # serve on 127.0.0.1:8480 / :8481
#   docker run --rm -v "$PWD:/cfg:ro" switchyard:dev validate /cfg
#
# The data port listens on loopback, as a sidecar should (the app shares the pod's network).
# Outside a pod, publish it with `serve --listen 0.0.0.0:8480` and `-p 8480:8480`.

# The Swift the project is developed with (`swift --version`); a Debian bookworm image, as the
# runtime stage below, so that the C libraries linked are the ones installed there.
ARG SWIFT_IMAGE=swift:6.3-bookworm

FROM ${SWIFT_IMAGE} AS build
RUN apt-get update \
 && apt-get install -y --no-install-recommends libevent-dev libyaml-dev libssl-dev pkg-config \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
# Manifest first: the dependency fetch stays cached while only sources change.
COPY Package.swift ./
RUN swift package resolve
COPY Sources ./Sources
COPY Tests ./Tests
# The Swift runtime and Foundation linked in: the runtime stage needs no Swift installation.
# Stripped: 62 MB (84 MB with symbols).
RUN swift build -c release --static-swift-stdlib --product switchyard \
 && install -D -m 0755 -s "$(swift build -c release --show-bin-path)/switchyard" /out/usr/local/bin/switchyard

FROM debian:bookworm-slim
# The shared libraries the binary links (`ldd`: libevent and its pthreads part, libyaml,
# OpenSSL 3, libstdc++), and CA certificates for `https://` backends verified against the
# system trust store.
RUN apt-get update \
 && apt-get install -y --no-install-recommends \
      libevent-2.1-7 libevent-pthreads-2.1-7 libyaml-0-2 libssl3 libstdc++6 ca-certificates \
 && rm -rf /var/lib/apt/lists/*
COPY --from=build /out/ /
# The default config: routes, policies and the example models they name. Relative paths in a
# policy are relative to its file, so the layout is the repository's.
WORKDIR /etc/switchyard
COPY routes ./routes
COPY policies ./policies
COPY examples/models ./examples/models
# The default policy writes its comparison log to ../comparisons: owned by the runtime user.
RUN mkdir -p comparisons && chown 65532:65532 comparisons
# An unprivileged user (no shell, no home), the "nonroot" id that distroless images use.
USER 65532:65532
EXPOSE 8480 8481
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/local/bin/switchyard"]
CMD ["serve", "--config", "/etc/switchyard"]
