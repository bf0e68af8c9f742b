# syntax=docker/dockerfile:1
# The image-mirror image: one static-enough binary on a small Debian base, run as a non-root
# user. Build: docker build -t image-mirror .

FROM rust:1-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked -p image-mirror \
 && strip target/release/image-mirror

FROM debian:bookworm-slim
# ca-certificates: TLS to registries and GitHub; git: `image-mirror check`; curl: health checks.
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates git curl \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --user-group --home-dir /home/mirror --create-home mirror
COPY --from=build /src/target/release/image-mirror /usr/local/bin/image-mirror
USER 10001:10001
WORKDIR /home/mirror
ENV IMAGE_MIRROR_CACHE_DIR=/home/mirror/.cache/image-mirror
ENTRYPOINT ["image-mirror"]
CMD ["--help"]
