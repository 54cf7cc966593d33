# One image for the controller, the node agent, the certificates' CLI and vmctl: the compose file picks
# the command. Multi-stage: the build stage installs every dependency and compiles; the runtime stage
# gets the compiled workspaces and the production dependencies only (no TypeScript, vitest, buf…).
#   docker build -t vmm:local .
#   docker run --rm vmm:local                                     # the controller (CMD below)
#   docker run --rm vmm:local node apps/node-agent/dist/main.js   # a node agent
#   docker run --rm vmm:local vmctl --help                        # the CLI (/usr/local/bin/vmctl)
# BASE_IMAGE: any Debian-like image with Node.js >= 20.19 and npm and a `node` user (uid 1000). The
# default is the official Node 20 LTS image; where no registry can be pulled, build a local one with
# scripts/build-local-base-image.sh and pass --build-arg BASE_IMAGE=localhost/vmm-base:bookworm-node20.
ARG BASE_IMAGE=node:20-bookworm-slim

FROM ${BASE_IMAGE} AS build
WORKDIR /app
# Manifests first, so that `npm ci` stays cached across source-only changes.
COPY package.json package-lock.json ./
COPY proto/package.json proto/
COPY libs/emulator/package.json libs/emulator/
COPY libs/migration/package.json libs/migration/
COPY libs/ksm/package.json libs/ksm/
COPY libs/qemu/package.json libs/qemu/
COPY libs/tls/package.json libs/tls/
COPY libs/logging/package.json libs/logging/
COPY apps/controller/package.json apps/controller/
COPY apps/node-agent/package.json apps/node-agent/
COPY apps/cli/package.json apps/cli/
COPY tools/local-cluster/package.json tools/local-cluster/
COPY tools/chaos/package.json tools/chaos/
COPY tools/fuzz/package.json tools/fuzz/
# npm ci rejects a lock file that lacks other platforms' optional packages (buf, swc builds for
# arm64 etc.); npm install resolves them from the same exact pins without saving (as scripts/ensure.sh).
RUN npm ci --no-audit --no-fund || npm install --no-save --no-audit --no-fund
COPY . .
# buf generate (proto/src/gen is not committed) + tsc -b of every workspace + the console's bundle.
RUN npm run build
# Then the dev dependencies go (every workspace declares what it imports at run time:
# test/compose-podman.test.ts runs the controller, the agents, certs-cli, the health probe and vmctl
# from the pruned tree).
RUN npm prune --omit=dev --no-audit --no-fund

FROM ${BASE_IMAGE} AS runtime
WORKDIR /app
ENV NODE_ENV=production
COPY --from=build /app /app
# `vmctl` on PATH: `docker compose exec controller vmctl nodes`.
RUN printf '#!/bin/sh\nexec node /app/apps/cli/dist/main.js "$@"\n' > /usr/local/bin/vmctl && chmod 755 /usr/local/bin/vmctl
# Servers bind 0.0.0.0 inside a container (the defaults are loopback, for local runs).
ENV CONTROLLER_HOST=0.0.0.0 AGENT_HOST=0.0.0.0
EXPOSE 50051 50052 8080
# Named volumes take their mount point's owner when first mounted: the certs service writes them as node.
RUN mkdir -p /certs /pki/controller /pki/node-1 /pki/node-2 /pki/node-3 && chown -R node:node /certs /pki
USER node
CMD ["node", "apps/controller/dist/main.js"]
