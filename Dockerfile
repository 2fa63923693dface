# One image for every role: SERVICES picks what a container runs (api, crawler, ingestor,
# scheduler). TypeScript runs through tsx, as with `npm start`; there is no build step to drift.
# Node 22: moleculer 0.15, moleculer-web, moleculer-db and moleculer-repl declare node >= 22.
FROM node:22-bookworm-slim
WORKDIR /app
ENV NODE_ENV=production
COPY package.json package-lock.json ./
RUN npm ci --omit=dev --no-audit --no-fund && npm cache clean --force
# .dockerignore keeps .env, secrets/ and local data out of the image.
COPY . .
# The embedded mode's PGlite writes under DATA_DIR; distributed mode writes nothing locally.
RUN mkdir -p /app/data && chown node:node /app/data
USER node
EXPOSE 3000 3030
# node, not npm: SIGTERM reaches Sluice, which hands running jobs back before it exits.
CMD ["node", "--import", "tsx", "bin/sluice.ts"]
