# One image for the controller and the node agent (and the CLI): the compose file picks the command.
#   docker build -t vmm .
#   docker run --rm vmm                                     # the controller (CMD below)
#   docker run --rm vmm node apps/node-agent/dist/main.js   # a node agent
FROM node:20-bookworm-slim
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
# buf generate (proto/src/gen is not committed) + tsc -b of every workspace. Dev dependencies stay:
# pruning a workspace install is not worth an image that might miss a runtime import.
RUN npm run build
ENV NODE_ENV=production
# Servers bind 0.0.0.0 inside a container (the defaults are loopback, for local runs).
ENV CONTROLLER_HOST=0.0.0.0 AGENT_HOST=0.0.0.0
EXPOSE 50051 50052
# Named volumes take their mount point's owner when first mounted: the certs service writes them as node.
RUN mkdir -p /certs /pki/controller /pki/node-1 /pki/node-2 /pki/node-3 && chown -R node:node /certs /pki
USER node
CMD ["node", "apps/controller/dist/main.js"]
