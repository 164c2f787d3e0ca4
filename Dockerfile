# promote worker image.
#
# Two stages on node:20-bookworm-slim (glibc, so the prebuilt native binaries of
# @temporalio/core-bridge and @swc/core load without a compiler toolchain):
#   build   - installs every dependency and compiles src/ to dist/ with tsc
#   runtime - production dependencies plus dist/ only, running as the non-root `node` user
#
# The worker bundles its workflows at start from dist/workflows/index.js, so no
# TypeScript sources are needed at runtime.

FROM node:20-bookworm-slim AS build
WORKDIR /app

COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund

COPY tsconfig.json tsconfig.build.json ./
COPY src/ ./src/
RUN npx tsc -p tsconfig.build.json


FROM node:20-bookworm-slim AS runtime
ENV NODE_ENV=production
WORKDIR /app

COPY package.json package-lock.json ./
RUN npm ci --omit=dev --no-audit --no-fund \
 && npm cache clean --force

COPY --from=build /app/dist ./dist

# State directory owned by `node`: a fresh named volume mounted here takes this
# ownership, so the non-root worker can write to it.
RUN mkdir -p /var/lib/promote \
 && chown node:node /var/lib/promote
ENV PROMOTE_STATE_DIR=/var/lib/promote

USER node

# node runs as the main process so SIGTERM reaches the worker, which drains before exiting.
CMD ["node", "dist/worker/main.js"]
