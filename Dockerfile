# veeam-restore-exporter container image.
#
#   buildah bud -t veeam-restore-exporter .      (or: docker build -t veeam-restore-exporter .)
#
# scripts/container-smoke builds and runs it where no registry is reachable, with stand-in base
# images of the same names made from Debian packages.
ARG RUST_IMAGE=rust:1-bookworm
ARG RUNTIME_IMAGE=debian:bookworm-slim

FROM ${RUST_IMAGE} AS builder
WORKDIR /src
# Dependencies and the workspace crates first, against stub sources of the exporter, so this
# layer is reused until Cargo.lock or crates/ change.
COPY Cargo.toml Cargo.lock build.rs ./
# The workspace's library crates: the manifest names them, so they must be there to build at all.
COPY crates ./crates
RUN mkdir -p src/bin tests \
    && echo 'fn main() {}' > src/bin/veeam-restore-exporter.rs \
    && touch src/lib.rs tests/main.rs \
    && cargo build --release --locked -p veeam-restore-exporter -p veeam-em-sim --bins \
    && rm -rf src
COPY src ./src
ARG REVISION=unknown
RUN touch src/lib.rs src/bin/*.rs \
    && VRE_GIT_REVISION="${REVISION}" cargo build --release --locked -p veeam-restore-exporter -p veeam-em-sim --bins

FROM ${RUNTIME_IMAGE}
ARG VERSION=0.1.0
ARG REVISION=unknown
LABEL org.opencontainers.image.title="veeam-restore-exporter" \
      org.opencontainers.image.description="Prometheus exporter that proves Veeam restores work: scheduled canary mounts and file restores through the Enterprise Manager REST API." \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.source="https://github.com/veeam-restore-exporter/veeam-restore-exporter" \
      org.opencontainers.image.documentation="https://github.com/veeam-restore-exporter/veeam-restore-exporter/blob/main/README.md"
# The CA bundle lets the exporter verify EM certificates signed by public or system-trusted CAs.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --system --gid 65532 nonroot \
    && useradd --system --uid 65532 --gid 65532 --home-dir /var/lib/veeam-restore-exporter --shell /usr/sbin/nologin nonroot \
    && mkdir -p /var/lib/veeam-restore-exporter /etc/veeam-restore-exporter \
    && chown 65532:65532 /var/lib/veeam-restore-exporter \
    && chmod 0700 /var/lib/veeam-restore-exporter
COPY --from=builder /src/target/release/veeam-restore-exporter /src/target/release/veeam-em-sim /usr/local/bin/
COPY examples/config.yml /etc/veeam-restore-exporter/config.yml
# Mount records (with the session tokens that own the mounts) live here: keep it persistent.
VOLUME ["/var/lib/veeam-restore-exporter"]
USER 65532:65532
WORKDIR /var/lib/veeam-restore-exporter
EXPOSE 9731
ENTRYPOINT ["/usr/local/bin/veeam-restore-exporter"]
# By default the image probes its built-in simulated EM (--demo). For a real EM, mount a
# configuration and pass: --config.file=/etc/veeam-restore-exporter/config.yml --storage.path=/var/lib/veeam-restore-exporter
CMD ["--demo", "--storage.path=/var/lib/veeam-restore-exporter"]
