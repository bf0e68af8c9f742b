# syntax=docker/dockerfile:1
# The image-mirror image: one static-enough binary on a small Debian base, run as a non-root
# user. Build: docker build -t image-mirror .

FROM rust:1-bookworm AS build
WORKDIR /src
COPY . .
# .git is not sent to the build: `--version` names the commit given here
# (docker build --build-arg IMAGE_MIRROR_COMMIT=$(git rev-parse --short=12 HEAD) .).
ARG IMAGE_MIRROR_COMMIT=unknown
RUN IMAGE_MIRROR_COMMIT=$IMAGE_MIRROR_COMMIT cargo build --release --locked -p image-mirror \
 && strip target/release/image-mirror \
 && mkdir -p /out/man \
 && target/release/image-mirror man --dir /out/man \
 && target/release/image-mirror completions bash > /out/image-mirror.bash

FROM debian:bookworm-slim
# ca-certificates: TLS to registries and GitHub; git: `image-mirror check`; curl: health checks.
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates git curl \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --user-group --home-dir /home/mirror --create-home mirror
COPY --from=build /src/target/release/image-mirror /usr/local/bin/image-mirror
COPY --from=build /out/man/ /usr/local/share/man/man1/
COPY --from=build /out/image-mirror.bash /usr/share/bash-completion/completions/image-mirror
USER 10001:10001
WORKDIR /home/mirror
ENV IMAGE_MIRROR_CACHE_DIR=/home/mirror/.cache/image-mirror
ENTRYPOINT ["image-mirror"]
CMD ["--help"]
