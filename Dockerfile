# coraza-spoa container image.
#
#   docker build -t coraza-spoa .                  # the image (stages: builder -> runtime)
#   docker build --target test .                   # runs .ci/run (the test suite) in the builder
#
# builder: the pinned Rust toolchain on Debian 12 (the same glibc as the runtime) fetches the
#          pinned CRS release, checks its SHA-256, and compiles it into the binary.
# test:    the builder plus the whole repository; `bash .ci/run` as root (installs HAProxy).
# runtime: distroless/cc (glibc, libgcc_s, no shell) with the binary and config.yaml only,
#          running as 65532:65532 with /var/log/coraza (owned by 65532) as a volume.
#
# Every base image is pinned by digest and the CRS tarball by SHA-256; tests/packaging.rs
# fails on an unpinned edit. To refresh a digest, ask the registry (`docker buildx imagetools
# inspect IMAGE:TAG`) and keep the tag beside the digest for readers. To bump the CRS pin, see
# rules/fetch-crs.sh (the build arguments below must equal the script's pin).

ARG CRS_VERSION=4.25.1
ARG CRS_SHA256=0539e66e7627fe71c160a644d8fb7ab6e450d53c9de208be5f95a35c70e1a154

FROM rust:1.95.0-bookworm@sha256:6258907abe69656e41cd992e0b705cdcfabcbbe3db374f92ed2d47121282d4a1 AS builder
ARG CRS_VERSION
ARG CRS_SHA256
WORKDIR /src

# The pinned CRS release: download, check the SHA-256, then unpack with rules/fetch-crs.sh
# (which checks the tarball against its own pin again and writes the SHA256SUMS build.rs
# verifies every rule file against).
COPY rules/fetch-crs.sh /usr/local/bin/fetch-crs.sh
RUN curl -fsSL --retry 3 -o /tmp/crs.tar.gz \
        "https://github.com/coreruleset/coreruleset/archive/refs/tags/v${CRS_VERSION}.tar.gz" \
    && echo "${CRS_SHA256}  /tmp/crs.tar.gz" | sha256sum -c - \
    && sh /usr/local/bin/fetch-crs.sh --tarball /tmp/crs.tar.gz --dest /opt/crs/v${CRS_VERSION} \
    && rm /tmp/crs.tar.gz
ENV CRS_DIR=/opt/crs/v${CRS_VERSION}

# What the release binary is built from (tests/ etc. come in the test stage).
# (perf/ because Cargo.toml names its benches.)
COPY Cargo.toml Cargo.lock build.rs overrides.conf ./
COPY rules ./rules
COPY src ./src
COPY perf ./perf
RUN cargo build --release --locked --bin coraza-spoa \
    && ./target/release/coraza-spoa --version \
    && mkdir -p /out/log \
    && cp target/release/coraza-spoa /out/coraza-spoa \
    && chown 65532:65532 /out/log \
    && chmod 0750 /out/log

FROM builder AS test
COPY . .
RUN bash .ci/run

FROM gcr.io/distroless/cc-debian12:nonroot@sha256:9dac0a79194e45a7da0158a9c6da57b217585af0786db3845d1f0ec1a0dd182f AS runtime
COPY --from=builder /out/coraza-spoa /usr/local/bin/coraza-spoa
COPY config.yaml /etc/coraza-spoa/config.yaml
# The audit log directory, owned by the agent's uid; a named volume starts as a copy of it.
COPY --from=builder --chown=65532:65532 /out/log /var/log/coraza
USER 65532:65532
EXPOSE 9000
VOLUME ["/var/log/coraza"]
# No shell or curl in distroless: the binary itself sends HAProxy's health-check HELLO to
# 127.0.0.1:9000 (the bind port in config.yaml) and exits 0 or 1.
HEALTHCHECK --interval=10s --timeout=5s --start-period=15s --retries=3 \
    CMD ["/usr/local/bin/coraza-spoa", "healthcheck", "--addr", "127.0.0.1:9000"]
ENTRYPOINT ["/usr/local/bin/coraza-spoa"]
CMD ["--config", "/etc/coraza-spoa/config.yaml"]
